"""PPO and world-model training under tf.distribute: 1 device vs 2 logical CPU devices vs 2
localhost workers, the same global batch, on this machine, in one run.

    python bench/distribute_scaling.py [--seconds=10] [--out=bench/results/distribute_scaling]

Each setting runs in fresh processes (logical devices and workers must be set before TensorFlow
starts): one process for 1 device and for 2 logical devices (``MirroredStrategy``), two for the
workers (``MultiWorkerMirroredStrategy`` over localhost ports from ``TF_CONFIG``, one CPU device
each). PPO is CartPole with ``ppo_cartpole`` at ``num_envs=8`` (8 envs per agent in all, split
over the replicas); the world model is ``vector_ensemble`` at ``batch_size=256`` on recorded
CartPole data. On one 2-core machine the replicas share the same cores, so ideal scaling is
1.0x: what the table shows is the cost of the distributed structure (per-minibatch all-reduce
between XLA programs, gathers, collectives over gRPC), not a speed-up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_float("seconds", 10.0, "timed seconds per measurement (after a warm-up call)")
flags.DEFINE_string("out", "bench/results/distribute_scaling", "writes OUT.json and OUT.md")
flags.DEFINE_string("child", None, "internal: devices:N or worker")
flags.DEFINE_string("data_dir", None, "internal: recorded CartPole data")
flags.DEFINE_integer("ppo_calls", 0, "internal: fixed PPO calls (workers must agree), 0: timed")
flags.DEFINE_integer("wm_steps", 0, "internal: fixed world-model steps, 0: timed")
flags.DEFINE_integer("seeds_calls", 0, "internal: fixed 2-agent PPO calls, 0: timed")
FLAGS = flags.FLAGS
flags.DEFINE_bool("gpus", False, "1 GPU vs all visible GPUs (MirroredStrategy) instead of CPU "
                  "devices and workers: bench/gpu/distribute_scaling.sh")
flags.DEFINE_integer("num_envs", 8, "envs in all (one agent), or half each for two agents")


def ppo_overrides(num_envs: int) -> tuple[str, str]:
    """One agent (its envs split over replicas); two agents (whole agents per replica)."""
    return (f"num_envs={num_envs},iterations_per_call=8",
            f"num_envs={num_envs // 2},num_seeds=2,iterations_per_call=8")


def measure(strategy, data_dir: str, seconds: float, ppo_calls: int = 0, wm_steps: int = 0,
            seeds_calls: int = 0, num_envs: int = 8) -> dict:
    """Steady PPO env steps/s and world-model optimiser steps/s under ``strategy``: for about
    ``seconds`` each, or for fixed counts (workers must all run the same number of steps)."""
    import numpy as np
    import tensorflow as tf  # after the logical devices are set

    from imagined_rl import distribute, loops, registry
    from imagined_rl.ppo import PPO
    from imagined_rl.world_models import trainer

    def agent_of(overrides: str, all_reduce: str = "auto") -> PPO:
        hp = registry.hparams_with_overrides("ppo_cartpole", overrides)
        return PPO(loops.make_env("CartPole-v1", num_envs), hp, total_env_steps=10**8,
                   strategy=strategy, all_reduce=all_reduce)

    def ppo(overrides: str, fixed_calls: int, all_reduce: str = "auto"
            ) -> tuple[float, float, int]:
        agent = agent_of(overrides, all_reduce)
        t0 = time.perf_counter()
        agent.train(1)
        compile_s = time.perf_counter() - t0
        calls, t0 = 0, time.perf_counter()
        while (calls < fixed_calls) if fixed_calls else (time.perf_counter() - t0 < seconds):
            agent.train(8)
            calls += 1
        steps = calls * 8 * agent.steps_per_iteration * agent.num_seeds
        return steps / (time.perf_counter() - t0), compile_s, calls

    one_agent, two_agents = ppo_overrides(num_envs)
    ppo_sps, compile_s, calls = ppo(one_agent, ppo_calls)
    seeds_sps, seeds_compile_s, seeds_calls = ppo(two_agents, ppo_calls and seeds_calls)
    fused = {}
    if strategy.num_replicas_in_sync > 1 and distribute.collectives_in_xla(strategy):
        # the one-agent rows ran the all-reduce inside XLA: the host form beside it, and the
        # two forms' weights after the same 2 iterations (the same keys: equal up to rounding)
        fused["ppo_host_env_steps_per_s"] = round(ppo(one_agent, 0, "host")[0])
        pair = [agent_of(one_agent, m) for m in ("xla", "host")]
        for a in pair:
            a.train(2)
        fused["xla_vs_host_max_weight_diff"] = max(
            float(np.max(np.abs(x.numpy() - y.numpy())))
            for x, y in zip(*(tf.nest.flatten(a.params) for a in pair)))

    config = trainer.ModelRunConfig(model="vector_ensemble", hparams_set="world_model_vector",
                                    hparams={"batch_size": 256, "resident_data": False},
                                    data_dir=data_dir, seed=0)  # streamed: as replicas are
    run = trainer.open_run(config, tempfile.mkdtemp(), log=lambda _: None, strategy=strategy)
    run.train(20, log_every=10**9, progress=False)  # compile
    t0 = time.perf_counter()
    run.train(70, log_every=10**9, progress=False)  # calibrate: 50 steps
    steps = wm_steps or max(50, round(50 * seconds / (time.perf_counter() - t0)))
    t0 = time.perf_counter()  # one call (its one checkpoint and dev loss at the end included)
    run.train(70 + steps, log_every=10**9, progress=False)
    wm_sps = steps / (time.perf_counter() - t0)
    return {"replicas": strategy.num_replicas_in_sync, "ppo_env_steps_per_s": round(ppo_sps),
            "ppo_first_call_s": round(compile_s, 2), "wm_steps_per_s": round(wm_sps, 1),
            "wm_windows_per_s": round(wm_sps * 256), "ppo_calls": calls, "wm_steps": steps,
            "seeds_env_steps_per_s": round(seeds_sps), "seeds_first_call_s":
            round(seeds_compile_s, 2), "seeds_calls": seeds_calls, **fused}


def child(mode: str, data_dir: str, seconds: float, ppo_calls: int, wm_steps: int,
          seeds_calls: int) -> None:
    import tensorflow as tf

    n = FLAGS.num_envs
    if mode == "devices" and FLAGS.gpus:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        if len(gpus) < 2:
            raise SystemExit(f"--gpus needs 2 or more GPUs visible to TensorFlow, found {gpus}")
        out = {"one": measure(tf.distribute.get_strategy(), data_dir, seconds, num_envs=n),
               "two": measure(tf.distribute.MirroredStrategy(gpus), data_dir, seconds,
                              num_envs=n)}
    elif mode == "devices":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        out = {"one": measure(tf.distribute.get_strategy(), data_dir, seconds, num_envs=n),
               "two": measure(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), data_dir,
                              seconds, num_envs=n)}
    else:
        out = {"workers": measure(tf.distribute.MultiWorkerMirroredStrategy(), data_dir,
                                  seconds, ppo_calls, wm_steps, seeds_calls, n)}
    print(json.dumps(out))


def _run_child(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _last_json(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"a benchmark child failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def record_data(data_dir: str) -> None:
    import tensorflow as tf

    from imagined_rl import data, loops

    env = loops.make_env("CartPole-v1", 8)
    data.record(env, lambda obs, key: tf.random.stateless_uniform([8], key, 0, 2, tf.int32),
                20_000, data_dir, seed=0, steps_per_shard=5_000, progress=False)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.child:
        return child(FLAGS.child, FLAGS.data_dir, FLAGS.seconds, FLAGS.ppo_calls,
                     FLAGS.wm_steps, FLAGS.seeds_calls)
    data_dir = os.path.join(tempfile.mkdtemp(), "cartpole")
    proc = _run_child(["--child=record", f"--data_dir={data_dir}"])
    proc.communicate()
    common = [f"--data_dir={data_dir}", f"--seconds={FLAGS.seconds}",
              f"--num_envs={FLAGS.num_envs}", f"--gpus={FLAGS.gpus}"]
    result = _last_json(_run_child(["--child=devices", *common]))
    result["command"] = "python bench/distribute_scaling.py " + " ".join(sys.argv[1:])
    result["num_envs"] = FLAGS.num_envs
    if FLAGS.gpus:
        return write(result, FLAGS.out)
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("localhost", 0))
    cluster = {"worker": [f"localhost:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    two = result["two"]  # the workers run as many steps as the 2 devices did in the time
    counts = [f"--ppo_calls={two['ppo_calls']}", f"--wm_steps={two['wm_steps']}",
              f"--seeds_calls={two['seeds_calls']}"]
    procs = [_run_child(["--child=worker", *common, *counts], {"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    result.update(_last_json(procs[0]))
    _last_json(procs[1])
    write(result, FLAGS.out)


def write(result: dict, out: str) -> None:
    one = result["one"]
    many = result["two"]["replicas"]
    rows = [("1 device (default strategy; PPO: one fused XLA program)", one),
            (f"{many} GPUs (MirroredStrategy)" if "workers" not in result else
             "2 logical CPU devices (MirroredStrategy)", result["two"])]
    if "workers" in result:
        rows.append(("2 localhost workers (MultiWorkerMirroredStrategy, TF_CONFIG)",
                     result["workers"]))
    lines = ["| setting | replicas | PPO, 1 agent (envs split): env steps/s | vs 1 device | "
             "PPO, 2 agents (one per replica): env steps/s | vs 1 device | "
             "world model: steps/s | vs 1 device |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ratio = lambda r, k: f"{r[k] / one[k]:.2f}x"
    for name, r in rows:
        lines.append(
            f"| {name} | {r['replicas']} | {r['ppo_env_steps_per_s']:,} | "
            f"{ratio(r, 'ppo_env_steps_per_s')} | {r['seeds_env_steps_per_s']:,} | "
            f"{ratio(r, 'seeds_env_steps_per_s')} | {r['wm_steps_per_s']} | "
            f"{ratio(r, 'wm_steps_per_s')} |")
    lines.append("")
    lines.append("First PPO call (compile), s: " + ", ".join(
        f"{name.split(' (')[0]}: {r['ppo_first_call_s']} / {r['seeds_first_call_s']}"
        for name, r in rows) + " (1 agent / 2 agents).")
    two = result["two"]
    if "ppo_host_env_steps_per_s" in two:
        lines.append(
            f"One agent split over {many} GPUs: all-reduce inside each GPU's XLA program "
            f"{two['ppo_env_steps_per_s']:,} env steps/s, between programs (the CPU form) "
            f"{two['ppo_host_env_steps_per_s']:,}; weights of the two forms after 2 "
            f"iterations differ by at most {two['xla_vs_host_max_weight_diff']:.2e}.")
    one_agent, two_agents = ppo_overrides(int(result.get("num_envs", 8)))
    lines += ["", f"Command: `{result['command']}`; PPO `ppo_cartpole` with `{one_agent}` "
              f"and `{two_agents}` (the same envs in all either way), "
              "world model `vector_ensemble` at `batch_size=256` (the same global batch in every "
              "row). Overhead = 1 - ratio; on one CPU machine the replicas share its cores."]
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if "--child=record" in sys.argv:
        record_data(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--data_dir=")))
    else:
        app.run(main)
