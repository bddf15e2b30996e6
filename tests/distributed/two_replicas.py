"""Runs PPO, world-model training and the SimPLe loop on 1 device and on 2 logical CPU devices
in one process and prints what tests/test_distribute.py checks, as one JSON object on the last
line.

A separate process because logical devices must be set before TensorFlow starts.
Usage: python two_replicas.py WORK_DIR
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from imagined_rl import data, loops, registry  # noqa: E402
from imagined_rl.ppo import PPO  # noqa: E402
from imagined_rl.simple import train_model_based  # noqa: E402
from imagined_rl.world_models import trainer  # noqa: E402

MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def flat(params) -> list[np.ndarray]:
    return [np.asarray(p) for p in tf.nest.flatten(params)]


def max_diff(a: list, b: list) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def cartpole_agent(overrides: str, steps: int, strategy=None) -> PPO:
    hp = registry.hparams_with_overrides("ppo_cartpole", overrides)
    env = loops.make_env("CartPole-v1", int(hp.num_envs) * int(hp.num_seeds))
    return PPO(env, hp, total_env_steps=steps, seed=3, strategy=strategy)


def ppo_update() -> dict:
    """One minibatch update: one device on the whole minibatch vs 2 replicas on its halves."""
    extra = "normalize_advantages=false,num_seeds=3,clip_grad_norm=0.05"  # 3: envs split
    one = cartpole_agent(extra, 4096)
    two = cartpole_agent(extra, 4096, MIRRORED)
    c = tf.nest.map_structure(lambda v: v.read_value(), one.state)
    c, batch, lr, _ = one._prepare(c, one.env)
    _, perms = one._shuffle(c, int(batch["obs"].shape[1]))
    idx = perms[:1]  # [1, S, mb]
    grads, _ = one._grads(tf.nest.flatten(c["params"]), batch, idx[0])
    expected, *_ = one._apply(tf.nest.flatten(c["params"]), grads, c["m"], c["v"],
                              c["updates"], lr)
    halves = tf.split(idx, 2, axis=-1)
    per_replica = MIRRORED.experimental_distribute_values_from_function(
        lambda ctx: halves[ctx.replica_id_in_sync_group])
    tf.function(lambda p: MIRRORED.run(two._replica_update, (batch, p, lr, 0)))(per_replica)
    got = [v.values for v in tf.nest.flatten(two.state["params"])]
    return {"replica_programs_host_ops": replica_programs_host_ops(two),
            "update_diff": max_diff(flat(expected), [g[0].numpy() for g in got]),
            "replica_diff": max_diff([g[0].numpy() for g in got], [g[1].numpy() for g in got]),
            "moved": max_diff(flat(expected), flat(c["params"]))}


def replica_programs_host_ops(agent: PPO) -> list[str]:
    """Lowers each per-replica program (prepare, gradients, apply) to XLA HLO, as a TPU would
    compile them; returns the host transfers and dynamic shapes found in them (none wanted)."""
    c = tf.nest.map_structure(lambda v: v.read_value(), agent.state)
    rid = tf.constant(1)
    prep = agent._shard_prepare(c, rid)
    params = tf.nest.flatten(c["params"])
    grads, _ = agent._shard_grads(params, prep["flat"], prep["perms"][0])
    hlos = [agent._shard_prepare.experimental_get_compiler_ir(c, rid)(stage="hlo"),
            agent._shard_grads.experimental_get_compiler_ir(
                params, prep["flat"], prep["perms"][0])(stage="hlo"),
            agent._shard_apply.experimental_get_compiler_ir(
                params, grads, c["m"], c["v"], c["updates"], prep["lr"])(stage="hlo")]
    bad = (" send(", " recv(", "outfeed", "infeed", "host-compute", "PyFunc", "<=")
    return [b for hlo in hlos for b in bad if b in hlo] + [
        "no while loop in prepare"] * ("while" not in hlos[0])


def seed_shards() -> dict:
    """4 agents on 2 replicas, 2 whole agents each (one XLA program per replica per call): the
    returns each reaches; then a sweep of 2 agents, one per replica, with learning rates 0 and
    3e-4: only the second may move."""
    agent = cartpole_agent("num_envs=4,num_seeds=4", 65_536, MIRRORED)
    returns = []
    while agent.iteration < agent.num_iterations:
        returns.append(agent.train()["return_mean"])
    returns = np.concatenate(returns)  # [iterations, agents]
    hlo = agent._seed_shard.experimental_get_compiler_ir(
        agent._read_state(), tf.constant(1), tf.constant(2))(stage="hlo")
    bad = [b for b in (" send(", " recv(", "outfeed", "infeed", "PyFunc", "<=") if b in hlo]
    swept = cartpole_agent("num_envs=4,num_seeds=2,hparams_sweep=learning_rate_constant=0|3e-4",
                           8192, MIRRORED)
    before = [np.asarray(p) for p in tf.nest.flatten(swept.params)]
    swept.train(2)
    after = [np.asarray(p) for p in tf.nest.flatten(swept.params)]
    return {"seed_shard_last10": np.nanmean(returns[-10:], axis=0).tolist(),
            "seed_shard_first4": np.nanmean(returns[:4], axis=0).tolist(),
            "seed_shard_steps": agent.env_steps, "seed_shard_hlo_bad": bad,
            "sweep_moved": [max(float(np.max(np.abs(a[i] - b[i]))) for a, b in
                                zip(after, before)) for i in range(2)]}


def ppo_learn(work: str) -> dict:
    """CartPole on 2 replicas (each with half of the 8 envs): the return it reaches; then its
    checkpoint restored on one device, which trains on from it."""
    agent = cartpole_agent("num_envs=8", 65_536, MIRRORED)
    returns = []
    while agent.iteration < agent.num_iterations:
        returns.extend(agent.train(8)["return_mean"][:, 0].tolist())
    obs = [v.values for v in tf.nest.flatten(agent.state["env_state"])]
    path = tf.train.Checkpoint(state=agent.variables()).save(os.path.join(work, "ppo", "ckpt"))
    one = cartpole_agent("num_envs=8", 65_536 + 4096)
    tf.train.Checkpoint(state=one.variables()).restore(path).assert_consumed()
    restored = max_diff(flat(one.params), flat(agent.params))
    more = one.train(1)["return_mean"][0, 0]
    return {"returns": returns, "env_steps": agent.env_steps,
            "state_replica_diff": max_diff([o[0].numpy() for o in obs],
                                           [o[1].numpy() for o in obs]),
            "restored_diff": restored, "restored_iteration": one.iteration,
            "restored_return": float(more)}


def world_model(work: str) -> dict:
    """vector_ensemble (no bootstrap: a deterministic loss) trained 300 steps on 1 device and on
    2 replicas with the same global batches (streamed on both): dev losses, before and after."""
    data_dir = os.path.join(work, "cartpole")
    env = loops.make_env("CartPole-v1", 8)
    uniform = lambda obs, key: tf.random.stateless_uniform(
        [8], key, 0, 2, tf.int32)
    data.record(env, uniform, 6_000, data_dir, seed=0, steps_per_shard=2_000)
    out = {}
    for name, strategy in (("one", None), ("two", MIRRORED)):
        config = trainer.ModelRunConfig(model="vector_ensemble", hparams_set="world_model_vector",
                                        hparams={"bootstrap": False, "resident_data": False},
                                        data_dir=data_dir, seed=0)
        run = trainer.open_run(config, os.path.join(work, name), log=lambda _: None,
                               strategy=strategy)
        before = run.dev_loss()
        run.train(300, log_every=100, progress=False)
        out[name] = {"before": before, "after": run.dev_loss(),
                     "weights": [w.numpy() for w in run.model.train_variables]}
    return {"wm_before": out["one"]["before"], "wm_one": out["one"]["after"],
            "wm_two": out["two"]["after"],
            "wm_weight_diff": max_diff(out["one"]["weights"], out["two"]["weights"])}


def simple_loop(work: str) -> dict:
    """Two short SimPLe epochs on CartPole with the world model and PPO in imagination on 2
    replicas (the real env on one device): what each epoch recorded."""
    hp = registry.hparams("rlmb_cartpole").parse(
        "epochs=2,real_steps_first=3000,real_steps_per_epoch=1000,model_train_steps=300,"
        "ppo_steps_per_epoch=16384,simulated_rollout_length=200,eval_episodes=4")
    records = train_model_based(os.path.join(work, "simple"), hp, seed=0, progress=False,
                                log=lambda _: None, strategy=MIRRORED)
    return {"simple": [{k: r[k] for k in ("real_return_mean", "imagined_env_steps",
                                          "model_dev_loss", "imagined_return_mean")}
                       for r in records]}


if __name__ == "__main__":
    result = {"replicas": MIRRORED.num_replicas_in_sync}
    result.update(ppo_update())
    result.update(world_model(sys.argv[1]))
    result.update(simple_loop(sys.argv[1]))
    result.update(ppo_learn(sys.argv[1]))
    result.update(seed_shards())
    print(json.dumps(result))
