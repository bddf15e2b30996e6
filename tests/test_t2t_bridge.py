"""The t2t bridge against the real tensor2tensor 1.15.7, run in its legacy venv.

Both ways: t2t's reader and ``t2t-trainer`` on data ``imagined_rl`` recorded (through
``imagined_rl/t2t_usr``), and our readers and world-model trainer on data t2t's own
``t2t-datagen`` recorded (``tests/t2t/tiny_pong_usr``, t2t's ``T2TGymEnv`` on Pong). The venv is
``scripts/make_t2t_venv.sh``'s (``.ci/run`` builds it); without it these tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from imagined_rl.problems.gym_problems import ATARI_GAMES

import imagined_rl
from imagined_rl import data, registry
from imagined_rl.envs import random_actions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = subprocess.run(["bash", os.path.join(ROOT, "scripts", "make_t2t_venv.sh"), "--path"],
                      capture_output=True, text=True, check=True).stdout.strip()
USR = os.path.join(os.path.dirname(imagined_rl.__file__), "t2t_usr")
TINY = os.path.join(ROOT, "tests", "t2t", "tiny_pong_usr")
DUMP = os.path.join(ROOT, "tests", "t2t", "dump.py")

pytestmark = [
    pytest.mark.t2t,
    pytest.mark.skipif(not os.path.exists(os.path.join(VENV, ".complete")),
                       reason=f"no t2t venv at {VENV}: build it with scripts/make_t2t_venv.sh"),
]


def t2t(tool: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """Runs ``tool`` (t2t-trainer, t2t-datagen, python) of the legacy venv."""
    env = dict(imagined_rl.foreign_env(), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    run = subprocess.run([os.path.join(VENV, "bin", tool), *args], capture_output=True,
                         text=True, env=env, timeout=900, cwd=VENV)
    if ok:
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return run


def dump(how: str, usr: str, problem: str, data_dir: str, split: str, out: str) -> dict:
    t2t("python", DUMP, how, usr, problem, data_dir, split, out)
    return dict(np.load(out))


def ours(data_dir: str, split: str) -> dict[str, np.ndarray]:
    rows = list(data.read_steps(data_dir, split).as_numpy_iterator())
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def pong(tmp_path_factory) -> dict[str, str]:
    """A few hundred steps of our gym_pong_random, in our layout and in t2t's."""
    dirs = {}
    env = registry.problem("gym_pong_random").make_env(2)
    for style in ("imagined_rl", "t2t"):
        dirs[style] = str(tmp_path_factory.mktemp(style))
        data.record(env, lambda obs, key: random_actions(env.action_spec, 2, key), 240,
                    dirs[style], seed=0, steps_per_shard=120, finish_episodes=False,
                    problem="gym_pong_random", style=style, progress=False)
    return dirs


def test_registry_help_lists_every_problem():
    run = t2t("t2t-trainer", f"--t2t_usr_dir={USR}", "--registry_help")
    out = run.stdout + run.stderr  # t2t logs its registry
    listed = set(re.findall(r"\* (imagined_rl_gym_\w+_random)\b", out))
    assert listed == {f"imagined_rl_gym_{g}_random" for g in ATARI_GAMES}


def test_t2t_datagen_points_at_imagined_rl_datagen(tmp_path):
    run = t2t("t2t-datagen", f"--t2t_usr_dir={USR}", "--problem=imagined_rl_gym_pong_random",
              f"--data_dir={tmp_path}", f"--tmp_dir={tmp_path}", ok=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "imagined_rl_gym_pong_random reads what imagined-rl records; record it with "
        f"imagined-rl datagen --problem=gym_pong_random --data_dir={tmp_path} "
        "(in imagined_rl's environment)")


@pytest.mark.parametrize("style", ["imagined_rl", "t2t"])
def test_t2t_reads_our_data_as_we_do(pong, style, tmp_path):
    """t2t's Problem.dataset (its decoders, then the bridge's reward mapping) gives our frames,
    actions, reward classes r + 1, done flags and frame numbers."""
    for split in ("train", "dev"):
        theirs = dump("dataset", USR, "imagined_rl_gym_pong_random", pong[style], split,
                      str(tmp_path / f"{split}.npz"))
        mine = ours(pong[style], split)
        np.testing.assert_array_equal(theirs["obs"], mine["obs"])
        np.testing.assert_array_equal(theirs["action"], mine["action"])
        np.testing.assert_array_equal(theirs["reward"], mine["reward"].astype(int) + 1)
        np.testing.assert_array_equal(theirs["done"], mine["done"])
        np.testing.assert_array_equal(theirs["frame_number"], mine["frame_number"])


def test_t2t_trainer_trains_a_t2t_video_model_on_our_pong_data(pong, tmp_path):
    out = tmp_path / "run"
    run = t2t("t2t-trainer", f"--t2t_usr_dir={USR}", f"--data_dir={pong['imagined_rl']}",
              "--problem=imagined_rl_gym_pong_random", "--model=next_frame_basic_deterministic",
              "--hparams_set=next_frame_tiny", "--train_steps=2", "--schedule=train",
              f"--output_dir={out}")
    losses = [float(x) for x in re.findall(r"Loss for final step: (\S+?)\.?$", run.stderr, re.M)]
    assert losses and np.isfinite(losses[-1])
    assert (out / "model.ckpt-2.index").exists()


@pytest.fixture(scope="module")
def t2t_written(tmp_path_factory) -> str:
    """What t2t's own t2t-datagen writes for a T2TGymEnv problem (no data_spec.json)."""
    d = tmp_path_factory.mktemp("t2t_datagen")
    t2t("t2t-datagen", f"--t2t_usr_dir={TINY}", "--problem=t2t_tiny_pong", f"--data_dir={d}",
        f"--tmp_dir={d}")
    return str(d)


def test_we_read_t2t_datagen_output_as_t2t_does(t2t_written, tmp_path):
    """Our read_steps against t2t's own T2TEnv loader: the same frames, actions, rewards, done
    flags, and rollouts as episodes."""
    names = sorted(os.listdir(t2t_written))
    assert names == sorted([f"t2t_tiny_pong-train-{i:05d}-of-00010.0" for i in range(10)]
                           + ["t2t_tiny_pong-dev-00000-of-00001.0"])
    spec = data.load_spec(t2t_written)
    assert (spec.style, spec.obs_shape, spec.action["n"]) == ("t2t", (105, 80, 3), 6)
    for split in ("train", "dev"):
        theirs = dump("t2t_env", TINY, "t2t_tiny_pong", t2t_written, split,
                      str(tmp_path / f"{split}.npz"))
        mine = ours(t2t_written, split)
        np.testing.assert_array_equal(theirs["obs"], mine["obs"])
        np.testing.assert_array_equal(theirs["action"], mine["action"])
        np.testing.assert_array_equal(theirs["reward"], mine["reward"].astype(int) + 1)
        np.testing.assert_array_equal(theirs["done"], mine["done"])
        np.testing.assert_array_equal(np.diff(theirs["episode"]) != 0,
                                      np.diff(mine["episode"]) != 0)


def test_our_world_model_trains_on_t2t_datagen_output(t2t_written, tmp_path):
    out = tmp_path / "wm"
    run = subprocess.run(
        [sys.executable, "-m", "imagined_rl.cli", "train", "--model=next_frame_basic_deterministic",
         "--hparams_set=next_frame_tiny", f"--data_dir={t2t_written}", "--train_steps=2",
         f"--output_dir={out}", "--noprogress"],
        capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "reading it as tensor2tensor data of t2t_tiny_pong" in run.stdout
    assert os.listdir(out / "checkpoints")
