"""Which strategy ``distribute.pick`` chooses, on a CPU machine with faked surroundings, and
training under it: 2 logical CPU devices, 2 localhost workers (TF_CONFIG, Slurm), TPU-ready."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data, distribute, loops, ppo, registry
from imagined_rl.errors import UserError
from imagined_rl.ppo import PPO
from imagined_rl.world_models import trainer


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


# --------------------------------------------------------------------------------------------
# Training under a strategy: 2 logical CPU devices, 2 localhost workers, the TPU program
# --------------------------------------------------------------------------------------------

HERE = os.path.dirname(__file__)
CLI = [sys.executable, "-m", "imagined_rl.cli"]


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory) -> dict:
    out = _run([sys.executable, os.path.join(HERE, "distributed", "two_replicas.py"),
                str(tmp_path_factory.mktemp("replicas"))], timeout=600)
    return json.loads(out.strip().splitlines()[-1])


def test_a_replica_share_is_every_agents_slice_and_gathers_back():
    s, n = 3, 8
    z = tf.reshape(tf.range(s * n * 2), [s * n, 2])  # env i of agent a is row a*n + i
    for r in (2, 4):
        shares = [ppo.replica_share(z, s, r, tf.constant(i)) for i in range(r)]
        for i, share in enumerate(shares):
            rows = [a * n + i * (n // r) + j for a in range(s) for j in range(n // r)]
            np.testing.assert_array_equal(share.numpy(), z.numpy()[rows])
        gathered = tf.concat([tf.reshape(x, [s, -1, 2]) for x in shares], axis=1)  # all_gather
        np.testing.assert_array_equal(tf.reshape(gathered, [-1, 2]).numpy(), z.numpy())


def test_checkpoint_agreement_is_a_no_op_on_one_worker(tmp_path):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), 3)
    assert distribute.common_checkpoint(None, manager) is None
    for step in (4, 9):
        manager.save(checkpoint_number=step)
    assert distribute.common_checkpoint(tf.distribute.get_strategy(), manager).endswith("-9")
    assert distribute.agree(None, True) and not distribute.agree(None, False)


def test_workers_without_a_common_checkpoint_are_one_line(tmp_path, monkeypatch):
    """What the other workers report is faked: one that lost its directory (-1) beside one
    at step 9, then one whose newest (5) this worker no longer keeps."""
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), 3)
    for step in (4, 9):
        manager.save(checkpoint_number=step)
    for others, message in (([-1.0], "others none"), ([5.0], "no step in common")):
        monkeypatch.setattr(distribute, "_across_workers", lambda s, v, o=others: [v, *o])
        with pytest.raises(UserError, match=message):
            distribute.common_checkpoint(None, manager)
    monkeypatch.setattr(distribute, "_across_workers", lambda s, v: [v, 4.0])
    assert distribute.common_checkpoint(None, manager).endswith("-4")


def test_ppo_update_on_two_replicas_is_one_device_on_the_whole_minibatch(two_replicas):
    r = two_replicas
    assert r["replicas"] == 2
    assert r["moved"] > 1e-4  # the update did something (clipped at 0.05 after the average)
    assert r["update_diff"] < 1e-6 and r["replica_diff"] == 0.0
    # each replica's programs lower to XLA as a TPU's would: no host ops, static shapes
    assert r["replica_programs_host_ops"] == []


def test_ppo_learns_cartpole_on_two_replicas_and_resumes_on_one_device(two_replicas):
    r = two_replicas
    returns = np.asarray(r["returns"])
    assert r["env_steps"] == 65_536 and r["state_replica_diff"] == 0.0
    assert np.nanmean(returns[:4]) < 40 and np.nanmean(returns[-10:]) >= 120, returns
    # the mirrored checkpoint is one device's: it restores there and trains on, still good
    assert r["restored_diff"] == 0.0 and r["restored_iteration"] == 65
    assert r["restored_return"] >= 100


def test_whole_agents_per_replica_learn_in_one_program_each(two_replicas):
    """num_seeds a multiple of the replicas: each replica trains its own agents, a call one XLA
    program per replica (no collective inside), and the per-agent hparams follow the agents."""
    r = two_replicas
    assert r["seed_shard_steps"] == 65_536 and r["seed_shard_hlo_bad"] == []
    assert max(r["seed_shard_first4"]) < 40 and min(r["seed_shard_last10"]) >= 120, r
    assert r["sweep_moved"][0] == 0.0 and r["sweep_moved"][1] > 1e-4  # lr 0 on replica 0


def test_world_model_on_two_replicas_matches_one_device_and_learns(two_replicas):
    r = two_replicas
    assert r["wm_one"] < 0.2 * r["wm_before"]  # learns
    assert abs(r["wm_two"] - r["wm_one"]) <= 1e-4 * r["wm_one"] and r["wm_weight_diff"] < 1e-5


def test_the_simple_loop_runs_on_two_replicas(two_replicas):
    """World model and PPO in imagination data parallel inside the loop: each epoch trains the
    model (dev loss falls) and the agent (returns well above a random policy's)."""
    first, second = two_replicas["simple"]
    assert first["imagined_env_steps"] == 16_384 and second["imagined_env_steps"] == 32_768
    assert second["model_dev_loss"] < first["model_dev_loss"]
    assert second["imagined_return_mean"] > 2 * 22  # a random CartPole policy lasts ~22 steps
    assert second["real_return_mean"] > 3 * 22  # and it plays the real env better than random


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _workers(envs: list[dict], args: list[str], timeout: float = 300) -> list[str]:
    """Runs the CLI once per env (one process per worker, concurrently); their stdouts."""
    procs = [subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **e}) for e in envs]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:  # a hung collective must not outlive the test
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [o for o, _ in outs]


def _same_checkpoints(a: str, b: str) -> int:
    ra, rb = tf.train.load_checkpoint(a), tf.train.load_checkpoint(b)
    names = [n for n in ra.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n]
    assert names and sorted(names) == sorted(rb.get_variable_to_shape_map().keys() - {
        n for n in rb.get_variable_to_shape_map() if "OBJECT_GRAPH" in n})
    for n in names:
        np.testing.assert_array_equal(ra.get_tensor(n), rb.get_tensor(n), err_msg=n)
    return len(names)


def _unlist_last_checkpoint(directory) -> None:
    """Rewrites a CheckpointManager's index as it stood before its last save (what a kill
    before the index update leaves): the newest path and its timestamp dropped."""
    lines = (directory / "checkpoint").read_text().splitlines()
    paths = [x for x in lines if x.startswith("all_model_checkpoint_paths")]
    stamps = [x for x in lines if x.startswith("all_model_checkpoint_timestamps")]
    rest = [x for x in lines if x.startswith("last_preserved")]
    (directory / "checkpoint").write_text("\n".join(
        [paths[-2].replace("all_model_checkpoint_paths", "model_checkpoint_path"),
         *paths[:-1], *stamps[:-1], *rest]) + "\n")


def test_two_localhost_workers_from_tf_config_train_ppo_identically_and_resume(tmp_path):
    """Native MinAtar Breakout (uint8 grids: the env states the workers gather are not all
    floats), a checkpoint decision agreed every call. Then a kill between the two workers'
    saves of the last checkpoint (worker 1's index still ends at the first): the rerun resumes
    both from the newest checkpoint they share and ends where the uninterrupted run ended."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    envs = [{"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                   "index": i}})}
            for i in range(2)]
    out = tmp_path / "ppo"
    args = ["train", "--env=MinAtar/Breakout-v1", "--hparams_set=ppo_minatar",
            "--train_steps=2048", "--hparams=iterations_per_call=1", f"--output_dir={out}",
            "--progress=false", "--episodes=2", "--save_checkpoints_secs=0"]
    outs = _workers(envs, args)
    assert "distribute: multi-worker from TF_CONFIG (2 replicas)" in outs[0]
    assert (out / "metrics.jsonl").exists() and (out / "eval.json").exists()
    chief = tf.train.latest_checkpoint(str(out / "checkpoints"))
    worker_dir = out / "workers" / "worker-1" / "checkpoints"
    worker = tf.train.latest_checkpoint(str(worker_dir))
    assert chief.endswith("ckpt-2") and _same_checkpoints(chief, worker) > 10
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(out / "checkpoints", uninterrupted)
    _unlist_last_checkpoint(worker_dir)
    outs = _workers(envs, args)
    assert f"resuming {out} from env step 1024" in outs[0], outs[0][-2000:]
    chief = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert _same_checkpoints(chief, tf.train.latest_checkpoint(str(worker_dir))) > 10
    assert _same_checkpoints(chief, str(uninterrupted / "ckpt-2")) > 10


def test_two_slurm_tasks_train_a_world_model_identically(tmp_path):
    env = loops.make_env("CartPole-v1", 4)
    data_dir = str(tmp_path / "data")
    data.record(env, lambda obs, key: tf.random.stateless_uniform([4], key, 0, 2, tf.int32),
                2_000, data_dir, seed=0, steps_per_shard=1_000)
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "localhost",
             "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_JOB_ID": "1"}
    envs = [{**slurm, "SLURM_PROCID": str(i)} for i in range(2)]
    out = tmp_path / "wm"
    outs = _workers(envs, ["train", "--model=vector_ensemble", f"--data_dir={data_dir}",
                           "--train_steps=20", "--hparams=batch_size=64",
                           f"--output_dir={out}", "--progress=false"])
    assert "distribute: multi-worker from Slurm (2 tasks)" in outs[0]
    chief = tf.train.latest_checkpoint(str(out / "checkpoints"))
    worker = tf.train.latest_checkpoint(str(out / "workers" / "worker-1" / "checkpoints"))
    assert _same_checkpoints(chief, worker) > 10


def test_the_ppo_program_is_tpu_compatible():
    """What a TPU needs, checked on CPU for the conv agent on MinAtar: the whole training call
    lowers to one XLA program (``jit_compile=True``; an op without an XLA kernel, such as a
    host callback, fails here), with no host transfers and only static shapes."""
    hp = registry.hparams_with_overrides("ppo_minatar_cnn", "num_envs=4,epoch_length=8,"
                                         "iterations_per_call=2,num_minibatches=2")
    env = registry.problem("minatar_breakout_random").make_env(4, seed=0)
    agent = PPO(env, hp, total_env_steps=64)
    fn = tf.function(agent._train_graph, jit_compile=True, autograph=False)
    hlo = fn.experimental_get_compiler_ir(tf.constant(2))(stage="hlo")
    assert "while" in hlo and "convolution" in hlo  # the loops and the conv torso are in it
    for host in (" send(", " recv(", "outfeed", "infeed", "host-compute", "PyFunc"):
        assert host not in hlo, host
    assert "<=" not in hlo  # no bounded-dynamic dimensions


def test_the_fused_split_program_is_the_split_pieces_in_one_xla_program():
    """``all_reduce="xla"`` (GPUs/TPUs: every agent's envs split over replicas, the gradient
    all-reduce inside each replica's one XLA program) cannot run on XLA:CPU with two replicas;
    forced on one device it runs the same pieces as ``all_reduce="host"`` (whose 2-replica runs are
    tested against one device above) and must give their result, as one program without host
    ops. Which strategies get it is ``collectives_in_xla``'s call."""
    hp = registry.hparams_with_overrides("ppo_cartpole", "num_envs=8,epoch_length=16,"
                                         "num_minibatches=4,iterations_per_call=3")
    env = registry.problem("gym_cartpole_random").make_env(8, seed=0)
    host, fused = (PPO(env, hp, 2_000, seed=3, all_reduce=s) for s in ("host", "xla"))
    out_host, out_fused = host.train(3), fused.train(3)
    for k in ("return_sum", "episodes", "policy_loss", "grad_norm"):
        np.testing.assert_allclose(out_fused[k], out_host[k], rtol=1e-4, atol=1e-5)
    for a, b in zip(tf.nest.flatten(host.params), tf.nest.flatten(fused.params)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
    assert fused.iteration == host.iteration == 3 and fused.env_steps == host.env_steps
    hlo = fused._split_replica.experimental_get_compiler_ir(tf.constant(3))(stage="hlo")
    assert hlo.count("HloModule") == 1 and "while" in hlo
    for op in (" send(", " recv(", "outfeed", "infeed", "host-compute", "PyFunc"):
        assert op not in hlo, op
    assert not distribute.collectives_in_xla(tf.distribute.get_strategy())
    cpus = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert not distribute.collectives_in_xla(cpus)  # XLA:CPU: the host form
    with pytest.raises(ValueError, match="all_reduce="):
        PPO(env, hp, 2_000, all_reduce="nccl")


def test_the_world_model_step_compiles_whole_for_tpus(tmp_path):
    """On TPUs (``step_in_xla``) a replica's whole
    world-model step -- gradients, all-reduce, clip, Keras's Adam -- is one XLA program. On one
    CPU device that program must train exactly as the one-device step does."""
    data_dir = str(tmp_path / "cartpole")
    env = loops.make_env("CartPole-v1", 8)
    data.record(env, lambda obs, key: tf.random.stateless_uniform([8], key, 0, 2, tf.int32),
                2_000, data_dir, seed=0, steps_per_shard=1_000, progress=False)
    config = trainer.ModelRunConfig(model="vector_ensemble", hparams_set="world_model_vector",
                                    hparams={"bootstrap": False}, data_dir=data_dir, seed=0)
    runs = [trainer.open_run(config, str(tmp_path / n), log=lambda _: None) for n in "ab"]
    assert not runs[0].step_in_xla  # one CPU device
    for run in runs:
        run.clip = 0.5  # the clipped path: the mean gradient's all-reduce, then the clip
    batch = next(iter(runs[0].dataset("train", shuffle=False)))
    key = tf.constant([1, 2], tf.int64)
    for _ in range(3):
        one = runs[0]._train_step(batch, key)
        whole = runs[1]._replica_step_xla(batch, key)
    np.testing.assert_allclose(whole["loss"].numpy(), one["loss"].numpy(), rtol=1e-5)
    for a, b in zip(runs[0].model.train_variables, runs[1].model.train_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)
    assert int(runs[1].step.numpy()) == 3
    ir = runs[1]._replica_step_xla.experimental_get_compiler_ir(batch, key)(stage="hlo")
    assert ir.count("HloModule") == 1 and "PyFunc" not in ir
