"""``imagined-rl datagen``: a SIGKILLed run, rerun, yields the same data as an unbroken one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from imagined_rl import data

CLI = [sys.executable, "-m", "imagined_rl.cli", "datagen", "--problem=gym_cartpole_random",
       "--num_steps=24000", "--steps_per_shard=2000", "--noprogress", "--seed=3"]


def _shards(d: str) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".tfrecord"))


def test_datagen_kill_and_rerun_gives_identical_data(tmp_path):
    killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    proc = subprocess.Popen([*CLI, f"--data_dir={killed}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isdir(killed) and len(_shards(killed)) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _shards(killed)
    assert 2 <= len(partial) < 12, partial  # killed mid-run
    rerun = subprocess.run([*CLI, f"--data_dir={killed}"], capture_output=True, text=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"kept {len(partial)} complete" in rerun.stdout, rerun.stdout
    subprocess.run([*CLI, f"--data_dir={clean}"], check=True, capture_output=True)
    assert _shards(killed) == _shards(clean)
    assert not [n for n in os.listdir(killed) if n.endswith(".tmp")]
    for name in _shards(clean):
        path_a, path_b = os.path.join(killed, name), os.path.join(clean, name)
        with open(path_a, "rb") as a, open(path_b, "rb") as b:
            assert a.read() == b.read(), name
    files = [os.path.join(killed, n) for n in _shards(killed)]
    assert data.verify_shards(files) >= 24000  # every record of every shard reads back


def test_datagen_unknown_problem_is_one_line(tmp_path):
    out = subprocess.run([*CLI[:4], "--problem=gym_cartpole_randon", f"--data_dir={tmp_path}"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(
        "imagined-rl: error: unknown problem 'gym_cartpole_randon'; did you mean: "
        "gym_cartpole_random")


def test_datagen_with_a_trained_policy(tmp_path):
    """``--policy_dir`` records with a PPO run's policy: a trained CartPole agent's episodes are
    far longer than a random policy's (~22 steps)."""
    run_dir, data_dir = str(tmp_path / "ppo"), str(tmp_path / "data")
    train = subprocess.run([*CLI[:3], "train", f"--output_dir={run_dir}", "--noprogress",
                            "--episodes=2"], capture_output=True, text=True, check=False)
    assert train.returncode == 0, train.stderr[-2000:]
    out = subprocess.run([*CLI, f"--data_dir={data_dir}", f"--policy_dir={run_dir}",
                          "--num_steps=8000", "--steps_per_shard=4000"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    episodes = {}
    for step in data.read_steps(data_dir, "train").as_numpy_iterator():
        episodes[int(step["episode"])] = int(step["frame_number"])
    assert np.mean(list(episodes.values())) > 200, episodes


def test_datagen_format_t2t_of_vector_data_is_one_line_and_t2t_usr_dir_prints_the_bridge(
        tmp_path):
    out = subprocess.run([*CLI, f"--data_dir={tmp_path}", "--format=t2t"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(
        "imagined-rl: error: t2t's data layout holds PNG frames and discrete actions; "
        "gym_cartpole_random has float32[4] observations")
    where = subprocess.run([*CLI[:3], "t2t_usr_dir"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert sorted(n for n in os.listdir(where) if not n.startswith("__pycache__")) == [
        "__init__.py", "atari_games.txt"]
