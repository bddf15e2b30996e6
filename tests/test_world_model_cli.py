"""`imagined-rl train --model` and `evaluate_model`: learning, resume after SIGKILL, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imagined_rl import data
from imagined_rl.envs.classic import CartPole
from imagined_rl.envs.core import random_actions
from imagined_rl.world_models.trainer import ModelRunConfig, train_world_model

CLI = [sys.executable, "-m", "imagined_rl.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory) -> str:
    data_dir = str(tmp_path_factory.mktemp("cartpole_data"))
    env = CartPole(8)
    data.record(env, lambda obs, key: random_actions(env.action_spec, 8, key), 12_000, data_dir,
                seed=0, steps_per_shard=2_000, progress=False, problem="gym_cartpole_random")
    return data_dir


def _metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_train_kill_resume_and_evaluate(cartpole_data, tmp_path):
    run_dir = str(tmp_path / "wm")
    args = ["train", "--model=vector_ensemble", f"--data_dir={cartpole_data}",
            f"--output_dir={run_dir}", "--train_steps=800", "--save_checkpoints_secs=1",
            "--noprogress"]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = os.path.join(run_dir, "checkpoints", "checkpoint")  # written by the first save
    metrics = os.path.join(run_dir, "metrics.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and not (
            os.path.exists(index) and os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = _run(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout + out.stderr
    rows = _metrics(run_dir)
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 800
    # it learned, on held-out windows (measured: 0.160 at step 100, 0.030 at 800)
    assert rows[-1]["dev_loss"] < rows[0]["dev_loss"] / 3

    ev = _run("evaluate_model", f"--output_dir={run_dir}", "--horizon=20", "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["one_step_error"] * 10 <= result["one_step_copy_error"], result
    assert result["reward_accuracy@12"] > 0.9  # CartPole pays 1 per step: easy, but checked
    assert os.path.getsize(result["video"]) > 1000
    assert os.path.exists(os.path.join(run_dir, "open_loop_error.png"))

    wrong = _run("evaluate", f"--output_dir={run_dir}")  # a PPO command on a world-model run
    assert wrong.returncode == 2 and "holds a world-model run" in wrong.stderr.splitlines()[-1]


def test_trainer_resumes_to_the_weights_of_a_run_that_never_stopped(cartpole_data, tmp_path):
    """A step's batch is drawn in the graph from a key of (seed, step), from the split held in
    memory: stopped at a checkpoint and reopened, a run ends bit for bit where an
    uninterrupted one does; with the data streamed instead (``resident_data=False``, the
    path under a strategy) it trains too."""
    config = ModelRunConfig("vector_ensemble", "world_model_vector", {}, cartpole_data, 0)
    quiet = dict(progress=False, log=lambda *_: None)
    straight = train_world_model(config, str(tmp_path / "straight"), 300, **quiet)
    train_world_model(config, str(tmp_path / "stopped"), 150, **quiet)  # calls: 100, 50
    resumed = train_world_model(config, str(tmp_path / "stopped"), 300, **quiet)  # 50, 100
    for a, b in zip(straight.model.train_variables, resumed.model.train_variables,
                    strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rows = _metrics(str(tmp_path / "stopped"))
    assert [r["step"] for r in rows] == [100, 150, 200, 300]
    assert [r["step"] for r in _metrics(str(tmp_path / "straight"))] == [100, 200, 300]

    streamed = ModelRunConfig("vector_ensemble", "world_model_vector",
                              {"resident_data": False}, cartpole_data, 0)
    train_world_model(streamed, str(tmp_path / "streamed"), 300, **quiet)
    rows = _metrics(str(tmp_path / "streamed"))
    assert rows[-1]["step"] == 300 and rows[-1]["dev_loss"] < rows[0]["dev_loss"], rows


@pytest.mark.parametrize("args, needle", [
    (["--model=grid_conv"], "model GridConv takes grid observations"),
    (["--model=next_frame_basic_deterministic"], "takes rgb observations"),
    (["--model=vector_ensembel"], "did you mean: vector_ensemble"),
    (["--model=vector_ensemble", "--hparams_set=ppo_cartpole"], "is not a world-model set"),
])
def test_model_data_mismatch_is_one_line(cartpole_data, tmp_path, args, needle):
    out = _run("train", f"--data_dir={cartpole_data}", f"--output_dir={tmp_path}", *args)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [x for x in out.stderr.splitlines() if x.startswith("imagined-rl: error:")]
    assert len(lines) == 1 and needle in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
