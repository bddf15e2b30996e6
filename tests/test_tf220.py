"""The smoke tests on TensorFlow 2.20 (tensorflow-tpu's newest release: what a TPU VM runs),
in the second venv of ``scripts/make_tf220_venv.sh`` (``.ci/run`` builds it; without it this
skips, saying so): the classic envs against gymnasium, PPO's functions, learning and checkpoints,
strategy picking and the TPU-ready PPO program."""

from __future__ import annotations

import os
import subprocess

import pytest

import imagined_rl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = subprocess.run(["bash", os.path.join(ROOT, "scripts", "make_tf220_venv.sh"), "--path"],
                      capture_output=True, text=True, check=True).stdout.strip()
SMOKE = ["tests/test_classic.py", "tests/test_ppo.py", "tests/test_distribute.py"]

pytestmark = [
    pytest.mark.tf220,
    pytest.mark.skipif(not os.path.exists(os.path.join(VENV, ".complete")),
                       reason=f"no TF 2.20 venv at {VENV}: build it with "
                              "scripts/make_tf220_venv.sh"),
]


def test_smoke_tests_pass_on_tensorflow_2_20():
    # (re)install this checkout into the venv (seconds): it may point at another clone
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "make_tf220_venv.sh")], check=True,
                   capture_output=True)
    python = os.path.join(VENV, "bin", "python")
    version = subprocess.run([python, "-c", "import tensorflow as tf; print(tf.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("2.20."), version
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SMOKE,
                           "-k", "not localhost and not slurm and not replica"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env=imagined_rl.foreign_env())  # TF 2.20 aborts on 2.21's XLA flag
    assert proc.returncode == 0, proc.stdout[-4000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
