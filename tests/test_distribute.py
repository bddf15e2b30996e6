"""Which strategy ``distribute.pick`` chooses, on a CPU machine with faked surroundings."""

from __future__ import annotations

import pytest
import tensorflow as tf

from imagined_rl import distribute
from imagined_rl.errors import UserError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (*distribute.TPU_ENV_VARS, "TF_CONFIG", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(var, raising=False)


def test_cpu_machine_gets_the_default_strategy():
    strategy, what = distribute.pick()
    assert strategy is tf.distribute.get_strategy() and what == "default strategy (CPU)"
    assert "--distribute=none" in distribute.pick("none")[1]
    with pytest.raises(UserError, match="use auto or none"):
        distribute.pick("mirrored")


def test_a_named_tpu_that_cannot_be_reached_is_one_line():
    with pytest.raises(UserError) as e:
        distribute.pick(tpu="no-such-tpu")
    assert "TPU 'no-such-tpu' cannot be used" in str(e.value) and "\n" not in str(e.value)


def test_a_guessed_tpu_falls_back_and_says_why(monkeypatch):
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")

    def fail(tpu):
        raise tf.errors.NotFoundError(None, None, "ConfigureDistributedTPU: no TPU\nmore")

    monkeypatch.setattr(distribute, "_tpu", fail)
    strategy, what = distribute.pick()
    assert strategy is tf.distribute.get_strategy()
    assert what == "default strategy (CPU) (no usable TPU: ConfigureDistributedTPU: no TPU)"


def test_workers_come_from_tf_config_then_slurm(monkeypatch):
    made = []

    class Fake:
        num_replicas_in_sync = 2

        def __init__(self, cluster_resolver=None):
            made.append(cluster_resolver)

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", Fake)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    assert distribute.pick()[1] == "multi-worker from TF_CONFIG (2 replicas)"
    monkeypatch.delenv("TF_CONFIG")
    for var, value in {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1",
                       "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
                       "SLURM_JOB_ID": "7"}.items():
        monkeypatch.setenv(var, value)
    assert distribute.pick()[1] == "multi-worker from Slurm (2 tasks)"
    spec = made[-1].cluster_spec().as_dict()
    assert spec == {"worker": ["node1:8888", "node2:8888"]}, spec
    assert made[-1].task_id == 1
