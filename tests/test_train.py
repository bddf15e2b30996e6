"""Learning, resume and command-line tests for the model-free loop (loops.py, cli.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import loops, registry, summaries
from imagined_rl.envs.classic import CartPole
from imagined_rl.ppo import PPO

CLI = [sys.executable, "-m", "imagined_rl.cli"]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def _metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's TensorBoard event files, in the order written: ``{tag: [(step,
    value), ...]}`` (a duplicate write shows as a repeated step)."""

    def created(name: str) -> tuple[int, int]:  # events.out.tfevents.<s>.<host>.<pid>.<n>.v2
        return int(name.split(".")[3]), int(name.split(".")[-2])

    out: dict[str, list[tuple[int, float]]] = {}
    names = [n for n in os.listdir(run_dir) if n.startswith("events.out.tfevents")]
    for name in sorted(names, key=created):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(run_dir, name)):
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    return out


def test_summaries_are_the_records_in_batches(tmp_path):
    """TensorBoard gets every record once, in order (per-agent lists as ``name/agent_i``, None
    skipped), only on flush: one compiled write per run of same-tag records, not an eager op
    per scalar."""
    writer = tf.summary.create_file_writer(str(tmp_path), max_queue=1)  # no buffering of its own
    s = summaries.Summaries(writer, every_s=3600)
    s.add({"env_steps": 10, "return_mean": None, "loss": 0.5, "return_per_agent": [1.0, None]})
    s.add({"env_steps": 20, "return_mean": 2.0, "loss": 0.25, "return_per_agent": [3.0, 4.0]})
    s.add({"env_steps": 30, "return_mean": 5.0})  # another tag set between two of the first
    s.add({"env_steps": 40, "return_mean": 6.0, "loss": 0.125, "return_per_agent": [7.0, 8.0]})
    assert _scalars(tmp_path) == {}
    s.flush()
    s.flush()  # nothing pending: writes nothing twice
    assert _scalars(tmp_path) == {
        "return_mean": [(20, 2.0), (30, 5.0), (40, 6.0)],
        "loss": [(10, 0.5), (20, 0.25), (40, 0.125)],
        "return_per_agent/agent_0": [(10, 1.0), (20, 3.0), (40, 7.0)],
        "return_per_agent/agent_1": [(20, 4.0), (40, 8.0)]}


def test_a_resumed_writer_trims_the_killed_runs_tail(tmp_path):
    """A killed run logged steps 1-10 (its last record cut off mid-write) but checkpointed at
    5; the rerun, resuming there, logs 6-8 again: TensorBoard's files then hold each step once,
    the rerun's values after the checkpoint, as metrics.jsonl does."""

    def log(writer, steps, value):
        with writer.as_default():
            for step in steps:
                tf.summary.scalar("loss", value + step, step=step)
        writer.flush()

    log(summaries.open_writer(str(tmp_path)), range(1, 11), 0.0)
    (old,) = [p for p in tmp_path.iterdir() if p.name.startswith("events.out.tfevents")]
    with open(old, "ab") as f:
        f.write(b"\x07\x00\x00\x00\x00\x00\x00\x00cut")  # a record the kill cut off
    log(summaries.open_writer(str(tmp_path), resume_step=5), range(6, 9), 100.0)
    assert _scalars(tmp_path) == {
        "loss": [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 9)]}
    assert summaries.trim_events(str(tmp_path), 8) == 0  # nothing after 8: files untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ppo_learns_cartpole(tmp_path):
    """The CI learning test: greedy return >= 475 on native CartPole within 300k steps."""
    hp = registry.hparams("ppo_cartpole")
    assert hp.train_steps <= 300_000
    config = loops.RunConfig("CartPole-v1", "ppo_cartpole", hp.values(), seed=1)
    result = loops.train_model_free(config, str(tmp_path), eval_episodes=32, progress=False)
    assert result["env_steps"] <= 300_000 + hp.num_envs * hp.epoch_length
    assert result["mean_return"] >= 475, result
    rows = _metrics(tmp_path)
    assert {"env_steps", "wall_time_s", "return_mean"} <= set(rows[0])
    assert rows[-1]["return_mean"] > rows[0]["return_mean"] + 200  # it learned while training
    assert os.path.getsize(tmp_path / "learning_curve.png") > 1000
    assert _scalars(tmp_path)["return_mean"] == [
        (r["env_steps"], pytest.approx(r["return_mean"])) for r in rows
        if r["return_mean"] is not None]


def test_ppo_learns_pendulum(tmp_path):
    """Gaussian policy: Pendulum-v1 improves to a greedy return >= -400 within 150k steps."""
    hp = registry.hparams("ppo_pendulum")
    config = loops.RunConfig("Pendulum-v1", "ppo_pendulum", hp.values(), seed=0)
    result = loops.train_model_free(config, str(tmp_path), eval_episodes=32, progress=False)
    assert result["mean_return"] >= -400, result
    assert _metrics(tmp_path)[0]["return_mean"] < -900  # it started poor, so this is learning


def test_resume_continues_exactly():
    """Checkpoint after one call, restore into a fresh agent: the next call matches bit-for-bit."""
    hp = registry.hparams("ppo_cartpole").parse(
        "num_envs=2,epoch_length=16,num_minibatches=2,iterations_per_call=2")

    def agent() -> PPO:
        return PPO(CartPole(2), hp, total_env_steps=1000, seed=3)

    straight = agent()
    straight.train()
    straight.train()
    first = agent()
    first.train()
    ckpt_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"resume-{os.getpid()}")
    path = tf.train.Checkpoint(state=first.variables()).save(ckpt_dir + "/ckpt")
    resumed = agent()
    tf.train.Checkpoint(state=resumed.variables()).restore(path).assert_consumed()
    resumed.train()
    for a, b in zip(tf.nest.flatten(straight.state), tf.nest.flatten(resumed.state)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_cli_kill_and_resume(tmp_path):
    """SIGKILL mid-run, rerun the same command: it resumes and finishes without duplicate logs."""
    run_dir = str(tmp_path / "run")
    args = ["train", f"--output_dir={run_dir}", "--train_steps=100000", "--save_checkpoints_secs=0",
            "--noprogress", "--episodes=4", "--hparams=iterations_per_call=1"]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = os.path.join(run_dir, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline:
        if os.path.isdir(ckpts) and sum(n.endswith(".index") for n in os.listdir(ckpts)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = _metrics(run_dir)[-1]["env_steps"]
    assert done_before < 100_000
    out = _cli(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout + out.stderr
    steps = [r["env_steps"] for r in _metrics(run_dir)]
    assert steps == sorted(set(steps)), "metrics.jsonl has duplicate or out-of-order lines"
    assert steps[-1] >= 100_000
    assert steps[0] == 128 * 4  # the first lines, from before the kill, are kept
    logged = [step for step, _ in _scalars(run_dir)["return_mean"]]  # TensorBoard's copy
    assert logged == sorted(set(logged)) and set(logged) <= set(steps)

    ev = _cli("evaluate", f"--output_dir={run_dir}", "--episodes=3", "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 3 and {"mean_return", "std_return"} <= set(result)


@pytest.mark.parametrize("args, needle", [
    (["--hparams=lerning_rate_constant=1e-3"], "did you mean: learning_rate_constant"),
    (["--hparams=num_envs=2.5"], "expects int"),
    (["--problem=gym_cartpole_randm"], "unknown problem 'gym_cartpole_randm'"),
    (["--hparams_set=ppo_cartpol"], "did you mean: ppo_cartpole"),
    (["--env=CartPol-v1"], "did you mean: CartPole-v1"),
    (["--env=tests.bad_envs:WrongObsShape"], "expected [4, 4]"),
    (["--env=tests.bad_envs:PythonState"], "not a tensor"),
    (["--env=tests.bad_envs:NoSuchEnv"], "cannot load custom env"),
    (["--hparams=num_minibatches=3"], "not divisible by num_minibatches=3"),
    (["--hparams_set=world_model_vector"], "is not a PPO set"),
    (["--env=Taxi-v3"], "Please use `Taxi-v4` instead"),  # gymnasium's deprecation, verbatim
    (["--hparams_sweep=num_envs=2|4"], "cannot sweep num_envs"),
    (["--hparams_sweep=gae_gamma=0.9|x"], "values must be numbers"),
    pytest.param(["--env=LunarLander-v3"], "needs a package that is not installed: Box2D",
                 marks=pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None,
                                          reason="Box2D is installed here")),
])
def test_cli_bad_input_is_one_line(tmp_path, args, needle):
    out = _cli("train", f"--output_dir={tmp_path}", "--hparams_set=ppo_base", *args)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("imagined-rl: error:")]
    assert len(lines) == 1 and needle in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_cli_hparams_sweep_trains_one_agent_per_value(tmp_path):
    """``--hparams_sweep`` makes one agent per value (num_seeds) in one run; metrics show each."""
    out = _cli("train", f"--output_dir={tmp_path}", "--hparams_sweep=learning_rate_constant="
               "1e-4|1e-3|3e-3;entropy_loss_coef=0|0.01|0.01", "--train_steps=8192",
               "--hparams=iterations_per_call=4")
    assert out.returncode == 0, out.stderr[-2000:]
    config = json.load(open(os.path.join(tmp_path, "config.json")))
    assert config["hparams"]["num_seeds"] == 3
    assert config["hparams"]["hparams_sweep"].startswith("learning_rate_constant=1e-4|")
    assert len(_metrics(tmp_path)[-1]["return_per_agent"]) == 3


def test_evaluation_says_when_episodes_never_end():
    """CliffWalking has no time limit; a policy that never reaches the goal is cut at the cap,
    and the evaluation says so instead of reporting -cap as if it were a score."""
    env = loops.make_env("CliffWalking-v1", 3)
    up = lambda obs, key: tf.zeros([3], tf.int32)
    returns, finished = loops.evaluate(env, up, max_steps=40, with_finished=True)
    env.close()
    assert returns.tolist() == [-40.0] * 3 and not finished.any()
    note = loops.unfinished_note({"unfinished": 3, "episodes": 3, "max_steps": 40})
    assert "3 of 3 episodes never ended: cut at 40 steps" in note
    assert loops.unfinished_note({"unfinished": 0, "episodes": 3, "max_steps": 40}) == ""


def test_missing_tensorflow_is_one_line(monkeypatch):
    """TensorFlow is an extra ([cpu], [gpu], [tpu]): without one the CLI says which to install."""
    from imagined_rl import cli
    from imagined_rl.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'imagined_rl\[cpu\]'"):
        cli._require_tensorflow()


def test_cli_registry_help():
    out = _cli("--registry_help")
    assert out.returncode == 0
    for name in ("ppo_original_params", "ppo_atari_base", "ppo_cartpole", "CartPole-v1"):
        assert name in out.stdout


def test_resume_on_a_host_env_restarts_its_episodes():
    """A gymnasium env cannot be rewound: after a restore PPO starts fresh episodes from the
    restored key instead of acting on stale observations."""
    from imagined_rl.envs.gym_adapter import GymEnv

    hp = registry.hparams("ppo_cartpole").parse(
        "num_envs=2,epoch_length=16,num_minibatches=2,iterations_per_call=1")
    first = PPO(GymEnv("CartPole-v1", 2, seed=0), hp, total_env_steps=1000, seed=1)
    first.train()
    values = [v.numpy() for v in first.variables()]
    second = PPO(GymEnv("CartPole-v1", 2, seed=0), hp, total_env_steps=1000, seed=1)
    for var, value in zip(second.variables(), values):
        var.assign(value)
    second.restart_envs()
    assert np.all(second.state["episode_return"].numpy() == 0)
    assert np.all(np.abs(second.state["obs"].numpy()) <= 0.05)  # a fresh CartPole reset
    second.train()
    assert second.iteration == 2
