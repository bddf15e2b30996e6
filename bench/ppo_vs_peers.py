"""imagined_rl's in-graph PPO against a JAX PPO (rejax) and stable-baselines3 on CartPole-v1,
side by side: same CPU, same run, same config, same seeds.

The full benchmark (minutes on 2 idle cores; each ``--scaling_envs`` value is capped at
``--scaling_timeout_s``; the JAX peer needs its venv, ``bench/make_jax_venv.sh``, once):

    bench/make_jax_venv.sh && python bench/ppo_vs_peers.py

A smoke run, about two minutes (each part can be skipped: --skip_imagined, --skip_cli,
--skip_jax, --skip_multi_seed, --skip_scaling, --skip_sb3):

    python bench/ppo_vs_peers.py --steps=10000 --seeds=1 --num_seeds=8 --scaling_iterations=1 \
        --scaling_envs=4 --out_dir=/tmp/ppo_bench

Config: PureJaxRL's CartPole PPO (the ``ppo_cartpole`` hparams set): 4 envs x 128 steps, 4 epochs
x 4 minibatches, Adam lr 2.5e-4 annealed linearly to 0, gamma 0.99, lambda 0.95, clip 0.2,
entropy 0.01, value 0.5, grad-norm 0.5, separate 2x64 tanh actor and critic. SB3 gets the same
numbers (``torch.set_num_threads(1)``). Known remaining differences, both SB3 defaults: SB3 does
not clip the value loss (``clip_range_vf=None``) and its value loss is the MSE, not 0.5 * MSE.

Measured in one process: parts 1-2 in ``--rounds`` rounds (the order of the parts reversed
every other round, so that the shared VM's drift between minutes falls on both sides; each
round's ratios against rejax are reported, and their median), then parts 3 and 4 once:

1. imagined_rl, ``--seeds`` separate runs of ``--steps`` env steps: compile time (first ``train``
   call minus the median later call), env steps/s excluding compile (median call), wall time
   (compile included) until a ``train`` call's mean training return is >= 475, greedy return
   over 32 episodes of a fresh native ``CartPole(32)``.
1b. ``imagined-rl train`` (the CLI users run: progress, metrics.jsonl, TensorBoard, checkpoints)
   on the same config, one process per seed: steady env steps/s (median of the logged calls
   after the first), compile (first call minus the median), wall time to a logged mean training
   return >= 475 (from the start of training, compile included), and the whole command's wall
   time (Python and TensorFlow start-up included).
1c. the JAX peer, ``bench/jax_peer.py`` (rejax 0.1.3 PPO on gymnax CartPole-v1, same config and
   timing method; see its docstring), in its own venv, one child process a round: single-seed runs,
   then ``--num_seeds`` agents vmapped into one call.
2. ``--num_seeds`` agents in one compiled call (each value): total env steps/s and the
   fraction whose greedy return is >= 475.
3. imagined_rl throughput as ``num_envs`` grows (``--scaling_envs``), compile excluded; each
   value in a child process that is given up after ``--scaling_timeout_s``.
4. stable-baselines3 on gymnasium CartPole-v1, the same steps and seeds: env steps/s, wall time
   until the mean return of the last 20 training episodes is >= 475 (checked after every rollout),
   greedy (deterministic) return over 32 gymnasium episodes. Run last, so torch is imported only
   after the TensorFlow timings.

The step count is rounded up to whole compiled calls (16 iterations x 512 steps = 8192 steps) so
every call has the same shape (another iteration count recompiles); SB3 trains the same count.
TensorFlow's thread settings are left alone on purpose: the threading setters slowed XLA 20x here.
Output: a Markdown report on stdout and in ``<out_dir>/ppo_vs_peers.md``, raw numbers in
``<out_dir>/ppo_vs_peers.json``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 500_000, "env steps per agent (rounded up to whole train calls)")
flags.DEFINE_integer("seeds", 3, "seeds for the single-agent imagined_rl and SB3 runs")
flags.DEFINE_list("num_seeds", ["8", "32"], "agents trained together in the multi-seed runs")
flags.DEFINE_integer("scaling_iterations", 8,
                     "PPO iterations per timed call at 1024 envs; fewer envs run more (x16 at 4, "
                     "x4 at 64), so a default call is 65k / 262k / 1M steps at 4 / 64 / 1024 "
                     "envs; 1 compile call + 3 timed calls each")
flags.DEFINE_list("scaling_envs", ["4", "64", "1024"], "num_envs values of the scaling run")
flags.DEFINE_integer("scaling_timeout_s", 300, "give up on one num_envs value after this long")
flags.DEFINE_integer("scaling_point", None, "internal: measure this num_envs, print JSON, exit")
flags.DEFINE_integer("eval_episodes", 32, "greedy evaluation episodes per agent")
flags.DEFINE_integer("rounds", 3, "times the head-to-head parts (1, 1b, 1c, 2) run, the order "
                     "of the sides reversed every other round so that the shared VM's drift "
                     "falls on both; ratios are reported per round and as their median")
flags.DEFINE_string("peer_xla_flags", None, "XLA_FLAGS for the JAX peer (default: as the user "
                    "set them, without the flag imagined_rl adds for TF); e.g. "
                    "--xla_cpu_experimental_ynn_fusion_type=dot to give it ours")
flags.DEFINE_bool("skip_imagined", False, "skip the single-agent imagined_rl runs")
flags.DEFINE_bool("skip_multi_seed", False, "skip the --num_seeds agents run")
flags.DEFINE_bool("skip_scaling", False, "skip the num_envs scaling run")
flags.DEFINE_bool("skip_sb3", False, "skip stable-baselines3")
flags.DEFINE_bool("skip_cli", False, "skip the imagined-rl train runs")
flags.DEFINE_bool("skip_jax", False, "skip the JAX peer (rejax)")
flags.DEFINE_integer("hidden", 64, "width of the two tanh layers of actor and critic on every "
                     "side (64: the config; e.g. 8: the width ablation in bench/README.md)")
flags.DEFINE_string("from_json", None, "only re-render the report of this ppo_vs_peers.json")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where ppo_vs_peers.md and ppo_vs_peers.json go")

THRESHOLD = 475.0  # gymnasium's reward_threshold for CartPole-v1
SB3_WINDOW = 20  # SB3: episodes in the training-return window
SCALING_REPEATS = 3  # timed calls per num_envs value (after the compile call); median reported
EVAL_SEED = 12345
HPARAMS_SET = "ppo_cartpole"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# imagined_rl helpers
# --------------------------------------------------------------------------------------------


def _hparams(overrides: str = ""):
    from imagined_rl import registry

    hp = registry.hparams(HPARAMS_SET)
    if FLAGS.hidden != 64:
        hp = hp.parse(_width_overrides())
    return hp.parse(overrides) if overrides else hp


def _width_overrides() -> str:
    h = FLAGS.hidden
    return f"policy_layers=[{h},{h}],value_layers=[{h},{h}]"


def _rounded_plan(steps: int) -> tuple[int, int, int]:
    """``(calls, iterations_per_call, env_steps)`` covering ``steps`` with equal-shaped calls."""
    hp = _hparams()
    per_call = int(hp.iterations_per_call)
    steps_per_iteration = int(hp.epoch_length) * int(hp.num_envs)
    calls = max(2, math.ceil(steps / (per_call * steps_per_iteration)))  # 2: compile is separable
    return calls, per_call, calls * per_call * steps_per_iteration


def _train_timed(agent, calls: int, per_call: int, t0: float) -> list[dict[str, Any]]:
    """Runs ``calls`` train calls of ``per_call`` iterations; one record per call."""
    records = []
    for _ in range(calls):
        start = time.perf_counter()
        out = agent.train(per_call)
        end = time.perf_counter()
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = out["return_sum"].sum(axis=0) / out["episodes"].sum(axis=0)  # [S]
        records.append({"call_s": end - start, "wall_s": end - t0, "env_steps": agent.env_steps,
                        "return_mean": [None if not np.isfinite(r) else float(r) for r in ret]})
    return records


def _compile_and_throughput(records: list[dict], steps_per_call: int) -> tuple[float, float]:
    """Compile time and env steps/s, both from the median of the calls after the first.

    The median, not the mean, so that a burst of other work on a shared machine during one call
    does not move the result; every call's time is kept in the JSON.
    """
    median_call = float(np.median([r["call_s"] for r in records[1:]]))
    return records[0]["call_s"] - median_call, steps_per_call / median_call


def _greedy_returns(agent, episodes: int, agent_index: int = 0) -> np.ndarray:
    from imagined_rl import loops
    from imagined_rl.envs.classic import CartPole

    policy = lambda obs, key: agent.act(obs, key, greedy=True, agent=agent_index)
    return loops.evaluate(CartPole(episodes), policy, seed=EVAL_SEED)


# --------------------------------------------------------------------------------------------
# 1. imagined_rl, one agent per run
# --------------------------------------------------------------------------------------------


def bench_imagined(seed: int, steps: int) -> dict[str, Any]:
    from imagined_rl.envs.classic import CartPole
    from imagined_rl.ppo import PPO

    calls, per_call, total = _rounded_plan(steps)
    t0 = time.perf_counter()
    hp = _hparams()
    agent = PPO(CartPole(int(hp.num_envs)), hp, total_env_steps=total, seed=seed)
    records = _train_timed(agent, calls, per_call, t0)
    train_wall = time.perf_counter() - t0
    compile_s, steps_per_s = _compile_and_throughput(records, per_call * agent.steps_per_iteration)
    hit = next((r for r in records if (r["return_mean"][0] or 0.0) >= THRESHOLD), None)
    returns = _greedy_returns(agent, FLAGS.eval_episodes)
    result = {
        "framework": "imagined_rl", "seed": seed, "env_steps": agent.env_steps,
        "compile_s": compile_s, "steps_per_s": steps_per_s, "train_wall_s": train_wall,
        "time_to_475_s": hit and hit["wall_s"], "steps_to_475": hit and hit["env_steps"],
        "time_to_475_excl_compile_s": hit and hit["wall_s"] - compile_s,
        "greedy_mean": float(returns.mean()), "greedy_std": float(returns.std()),
        "greedy_returns": returns.tolist(),
        "curve": [{"env_steps": r["env_steps"], "wall_s": round(r["wall_s"], 3),
                   "call_s": round(r["call_s"], 3), "return_mean": r["return_mean"][0]}
                  for r in records],
    }
    log(f"imagined_rl seed {seed}: compile {compile_s:.1f}s, {steps_per_s:.0f} steps/s, "
        f"475 at {_fmt(result['time_to_475_s'])}s, greedy {returns.mean():.1f}")
    return result


# --------------------------------------------------------------------------------------------
# 1b. imagined-rl train, the command line
# --------------------------------------------------------------------------------------------


def bench_cli(seed: int, steps: int, work_dir: str) -> dict[str, Any]:
    """One ``imagined-rl train`` process on the bench's config; figures from its metrics.jsonl."""
    import shutil

    out = os.path.join(work_dir, f"cli_seed{seed}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "imagined_rl.cli", "train", "--env=CartPole-v1",
           f"--hparams_set={HPARAMS_SET}", f"--train_steps={steps}", f"--seed={seed}",
           f"--output_dir={out}", "--episodes=32"]
    if FLAGS.hidden != 64:
        cmd.append(f"--hparams={_width_overrides()}")
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - start
    if done.returncode != 0:
        return {"framework": "imagined-rl train", "seed": seed, "error": done.stderr[-500:]}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    with open(os.path.join(out, "eval.json")) as f:
        evaluation = json.load(f)
    calls = [r["env_steps"] - p["env_steps"] for p, r in zip([{"env_steps": 0}, *records],
                                                               records)]
    call_s = [n / r["env_steps_per_s"] for n, r in zip(calls, records)]
    median = float(np.median(call_s[1:]))
    compile_s = call_s[0] - median
    hit = next((r for r in records if (r["return_mean"] or 0.0) >= THRESHOLD), None)
    result = {
        "framework": "imagined-rl train", "seed": seed, "env_steps": records[-1]["env_steps"],
        "compile_s": compile_s, "steps_per_s": float(np.median(
            [r["env_steps_per_s"] for r in records[1:]])),
        "train_wall_s": records[-1]["wall_time_s"], "process_wall_s": process_s,
        "time_to_475_s": hit and hit["wall_time_s"], "steps_to_475": hit and hit["env_steps"],
        "greedy_mean": evaluation["mean_return"], "greedy_std": evaluation["std_return"],
        "command": " ".join(shlex.quote(a) for a in cmd),
    }
    log(f"imagined-rl train seed {seed}: compile {compile_s:.1f}s, "
        f"{result['steps_per_s']:.0f} steps/s, 475 at {_fmt(result['time_to_475_s'])}s, "
        f"process {process_s:.1f}s, greedy {result['greedy_mean']:.1f}")
    return result


# --------------------------------------------------------------------------------------------
# 1c. the JAX peer (rejax), in its own venv
# --------------------------------------------------------------------------------------------


def bench_jax(seeds: int, steps: int, agents: list[int]) -> dict[str, Any]:
    """Runs ``bench/jax_peer.py`` in the venv of ``bench/make_jax_venv.sh``."""
    import imagined_rl

    here = os.path.dirname(os.path.abspath(__file__))
    venv = subprocess.run(["bash", os.path.join(here, "make_jax_venv.sh"), "--path"],
                          capture_output=True, text=True, check=True).stdout.strip()
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, ".complete")):
        return {"error": f"no JAX venv at {venv}: build it with bench/make_jax_venv.sh"}
    cmd = [python, os.path.join(here, "jax_peer.py"), f"--steps={steps}", f"--seeds={seeds}",
           "--agents", *map(str, agents), f"--hidden={FLAGS.hidden}"]
    # the peer runs with JAX's own XLA defaults, not the flag imagined_rl adds for TF
    env = dict(imagined_rl.foreign_env(), JAX_PLATFORMS="cpu")
    if FLAGS.peer_xla_flags is not None:
        env["XLA_FLAGS"] = FLAGS.peer_xla_flags
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {"error": done.stderr[-800:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["command"] = " ".join(shlex.quote(a) for a in cmd)
    result["xla_flags"] = env.get("XLA_FLAGS")
    for r in result["single"]:
        log(f"{r['framework']} seed {r['seed']}: compile {r['compile_s']:.1f}s, "
            f"{r['steps_per_s']:.0f} steps/s, 475 at {_fmt(r['time_to_475_s'])}s, greedy "
            f"{r['greedy_mean']:.1f}")
    for v in result["vmapped"]:
        log(f"rejax {v['agents']} agents vmapped: compile {v['compile_s']:.1f}s, "
            f"{v['total_steps_per_s']:.0f} steps/s total")
    return result


# --------------------------------------------------------------------------------------------
# 2. imagined_rl, several agents in one compiled call
# --------------------------------------------------------------------------------------------


def bench_multi_seed(num_seeds: int, steps: int) -> dict[str, Any]:
    from imagined_rl.envs.classic import CartPole
    from imagined_rl.ppo import PPO

    calls, per_call, total = _rounded_plan(steps)
    t0 = time.perf_counter()
    hp = _hparams(f"num_seeds={num_seeds}")
    agent = PPO(CartPole(int(hp.num_envs) * num_seeds), hp, total_env_steps=total, seed=0)
    records = _train_timed(agent, calls, per_call, t0)
    train_wall = time.perf_counter() - t0
    steps_per_call = per_call * agent.steps_per_iteration * num_seeds  # all agents together
    compile_s, steps_per_s = _compile_and_throughput(records, steps_per_call)
    greedy = [float(_greedy_returns(agent, FLAGS.eval_episodes, i).mean())
              for i in range(num_seeds)]
    solved = sum(g >= THRESHOLD for g in greedy)
    result = {
        "num_seeds": num_seeds, "env_steps_per_agent": agent.env_steps, "compile_s": compile_s,
        "total_steps_per_s": steps_per_s, "per_agent_steps_per_s": steps_per_s / num_seeds,
        "train_wall_s": train_wall, "greedy_mean_per_agent": greedy,
        "fraction_solved": solved / num_seeds,
        "final_train_return_per_agent": records[-1]["return_mean"],
        "call_s": [r["call_s"] for r in records],
    }
    log(f"{num_seeds} seeds in one call: compile {compile_s:.1f}s, {steps_per_s:.0f} steps/s "
        f"total, {solved}/{num_seeds} greedy >= {THRESHOLD:g}")
    return result


# --------------------------------------------------------------------------------------------
# 3. imagined_rl throughput against num_envs
# --------------------------------------------------------------------------------------------


def measure_scaling_point(num_envs: int, base_iterations: int) -> dict[str, Any]:
    """Env steps/s of one ``num_envs``: a compile call, then SCALING_REPEATS timed calls."""
    from imagined_rl.envs.classic import CartPole
    from imagined_rl.ppo import PPO

    factor = 16 if num_envs <= 4 else 4 if num_envs <= 64 else 1
    iterations = base_iterations * factor
    hp = _hparams(f"num_envs={num_envs}")
    steps_per_call = iterations * int(hp.epoch_length) * num_envs
    calls = 1 + SCALING_REPEATS
    agent = PPO(CartPole(num_envs), hp, total_env_steps=calls * steps_per_call, seed=0)
    records = _train_timed(agent, calls, iterations, time.perf_counter())
    compile_s, steps_per_s = _compile_and_throughput(records, steps_per_call)
    return {"num_envs": num_envs, "iterations": iterations, "timed_env_steps": steps_per_call,
            "compile_s": compile_s, "steps_per_s": steps_per_s,
            "call_s": [r["call_s"] for r in records]}


def bench_scaling_point(num_envs: int, base_iterations: int) -> dict[str, Any]:
    """:func:`measure_scaling_point` in a child process, given up after ``--scaling_timeout_s``.

    A child, because a compiled call cannot be interrupted: a pathologically slow point must not
    stall the whole benchmark.
    """
    cmd = [sys.executable, os.path.abspath(__file__), f"--scaling_point={num_envs}",
           f"--scaling_iterations={base_iterations}", f"--hidden={FLAGS.hidden}"]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True,
                              timeout=FLAGS.scaling_timeout_s)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result = {"num_envs": num_envs, "iterations": None, "timed_env_steps": None,
                  "compile_s": None, "steps_per_s": None,
                  "error": f"timed out after {FLAGS.scaling_timeout_s} s"}
    except (subprocess.CalledProcessError, ValueError, IndexError) as e:
        result = {"num_envs": num_envs, "iterations": None, "timed_env_steps": None,
                  "compile_s": None, "steps_per_s": None, "error": f"failed: {e}"}
    result["child_wall_s"] = time.perf_counter() - start
    log(f"num_envs={num_envs}: {result.get('error') or _fmt(result['steps_per_s'], 0) + ' steps/s'}"
        f" (compile {_fmt(result['compile_s'])}s)")
    return result


# --------------------------------------------------------------------------------------------
# 4. stable-baselines3
# --------------------------------------------------------------------------------------------


def bench_sb3(seed: int, steps: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)

    class FirstCrossing(BaseCallback):
        """After each rollout: mean return of the last SB3_WINDOW episodes, first >= 475."""

        def __init__(self, t0: float):
            super().__init__()
            self.t0, self.time_s, self.steps = t0, None, None
            self.curve: list[dict[str, Any]] = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            episodes = list(self.model.ep_info_buffer)[-SB3_WINDOW:]
            if not episodes:
                return
            mean = float(np.mean([e["r"] for e in episodes]))
            wall = time.perf_counter() - self.t0
            self.curve.append({"env_steps": self.num_timesteps, "wall_s": round(wall, 3),
                               "return_mean": mean})
            if self.time_s is None and mean >= THRESHOLD:
                self.time_s, self.steps = wall, self.num_timesteps

    t0 = time.perf_counter()
    model = PPO(
        "MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=seed), n_steps=128,
        batch_size=128, n_epochs=4, learning_rate=lambda f: 2.5e-4 * f, gamma=0.99,
        gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        device="cpu", seed=seed,
    )
    callback = FirstCrossing(t0)
    learn_start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    learn_s = time.perf_counter() - learn_start
    train_wall = time.perf_counter() - t0
    eval_env = make_vec_env("CartPole-v1", n_envs=FLAGS.eval_episodes, seed=EVAL_SEED)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=FLAGS.eval_episodes,
                                 deterministic=True, return_episode_rewards=True)
    returns = np.asarray(returns, float)
    result = {
        "framework": "stable-baselines3", "seed": seed, "env_steps": int(model.num_timesteps),
        "compile_s": None, "steps_per_s": model.num_timesteps / learn_s,
        "train_wall_s": train_wall,
        "time_to_475_s": callback.time_s, "steps_to_475": callback.steps,
        "greedy_mean": float(returns.mean()), "greedy_std": float(returns.std()),
        "greedy_returns": returns.tolist(), "curve": callback.curve,
    }
    log(f"SB3 seed {seed}: {result['steps_per_s']:.0f} steps/s, 475 at "
        f"{_fmt(callback.time_s)}s, greedy {returns.mean():.1f}")
    return result


# --------------------------------------------------------------------------------------------
# 5. The physical limit: FLOPs per env step and the machine's peak
# --------------------------------------------------------------------------------------------


def flops_per_env_step(obs_dim: int = 4, actions: int = 2) -> dict[str, float]:
    """Floating-point operations the config does per env step, counted from its shapes.

    Dense layers only (matmul: 2 FLOPs per multiply-add; activations, losses, the env's physics
    and the RNG are a few percent more and left out): a forward pass of actor and critic while
    acting, and per update epoch a forward and a backward pass (backward ~2x forward: weight and
    input gradients) over every sample; Adam's ~10 FLOPs per parameter per minibatch step
    spread over the iteration's steps. Both sides compute the same: same networks, same count
    of passes (rejax evaluates the critic per step in the rollout, imagined_rl once on the whole
    batch after it).
    """
    hp = _hparams()
    policy = [obs_dim, *map(int, hp.policy_layers), actions]
    value = [obs_dim, *map(int, hp.value_layers), 1]
    macs = sum(a * b for net in (policy, value) for a, b in zip(net, net[1:]))
    params = sum(a * b + b for net in (policy, value) for a, b in zip(net, net[1:]))
    forward = 2.0 * macs
    epochs, minibatches = int(hp.optimization_epochs), int(hp.num_minibatches)
    steps_per_iteration = int(hp.epoch_length) * int(hp.num_envs)
    adam = 10.0 * params * epochs * minibatches / steps_per_iteration
    total = forward + epochs * 3.0 * forward + adam
    return {"forward": forward, "update": epochs * 3.0 * forward, "adam": adam, "total": total,
            "parameters": params}


def peak_flops() -> dict[str, Any]:
    """fp32 peak of this machine: cores x clock x 32 FLOPs/cycle where the CPU has AVX2 + FMA
    (two 256-bit FMA pipes per core, as AMD Zen 2+ and Intel since Haswell), else 16."""
    mhz, flags = 0.0, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    mhz = max(mhz, float(line.split(":")[1]))
                elif line.startswith("flags"):
                    flags = set(line.split(":")[1].split())
    except OSError:
        pass
    per_cycle = 32 if {"avx2", "fma"} <= flags else 16
    cores = os.cpu_count() or 1
    return {"cores": cores, "mhz": mhz, "flops_per_cycle": per_cycle,
            "peak": cores * mhz * 1e6 * per_cycle}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _summary(runs: list[dict]) -> dict[str, Any]:
    hits = [r["time_to_475_s"] for r in runs if r["time_to_475_s"] is not None]
    return {
        "steps_per_s": _mean([r["steps_per_s"] for r in runs]),
        "compile_s": _mean([r["compile_s"] for r in runs]),
        "time_to_475_s": _mean(hits), "crossed": f"{len(hits)}/{len(runs)}",
        "greedy_mean": _mean([r["greedy_mean"] for r in runs]),
    }


def environment_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "tensorflow": next((version(p) for p in ("tensorflow-cpu", "tensorflow")
                            if version(p) != "not installed"), "not installed"),
        "torch": version("torch"), "stable_baselines3": version("stable-baselines3"),
        "gymnasium": version("gymnasium"), "numpy": version("numpy"),
    }


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    jax = results.get("jax") or {}
    lines = [
        "# PPO on CartPole-v1: imagined_rl vs a JAX PPO (rejax) and stable-baselines3",
        "",
        f"- date: {env['date']}",
        f"- command: `{env['command']}`",
        f"- CPU: {env['cpu']} ({env['cpu_count']} logical cores)",
        f"- python {env['python']}, TensorFlow {env['tensorflow']}, torch {env['torch']}, "
        f"stable-baselines3 {env['stable_baselines3']}, gymnasium {env['gymnasium']}, "
        f"numpy {env['numpy']}; JAX peer: "
        + (f"rejax {jax['rejax']}, gymnax {jax['gymnax']}, jax {jax['jax']}, XLA_FLAGS "
           + ("not recorded" if "xla_flags" not in jax else jax["xla_flags"] or "(JAX defaults)")
           if "jax" in jax
           else jax.get("error", "not run")),
        f"- config: PureJaxRL CartPole PPO (`{HPARAMS_SET}`), {results['env_steps']:,} env steps "
        f"per agent (--steps={results['requested_steps']:,} rounded up to whole train calls)"
        + (f"; **2x{results['hidden']} tanh layers** (--hidden, an ablation; the config's are "
           "2x64)" if results.get("hidden", 64) != 64 else ""),
        "",
    ]
    runs = (results.get("imagined", []) + results.get("cli", []) + jax.get("single", [])
            + results.get("sb3", []))
    if runs:
        lines += [
            "## Single agent per run",
            "",
            "steps/s excludes compile (the median call of 16 iterations; SB3 has no compile); "
            "time to 475 is wall time from agent construction (CLI: from the start of "
            "training), compile included, at the end of the first call whose finished "
            f"training episodes average >= 475 (SB3: last {SB3_WINDOW} episodes after each "
            f"rollout); greedy return: {FLAGS.eval_episodes} episodes. CLI: the whole "
            "command's wall time (start-up, training, evaluation) in the last column.",
            "",
            "| framework | round | seed | env steps | compile s | env steps/s | time to 475 s "
            "| steps to 475 | train wall s | greedy return | process s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in runs:
            if "error" in r:
                lines.append(f"| {r['framework']} | {_round_label(r)} | {r['seed']} "
                             f"| failed: {r['error'][:80]} |")
                continue
            std = "" if r.get("greedy_std") is None else f" ± {r['greedy_std']:.1f}"
            lines.append(
                f"| {r['framework']} | {_round_label(r)} | {r['seed']} | {r['env_steps']:,} "
                f"| {_fmt(r['compile_s'])} "
                f"| {_fmt(r['steps_per_s'], 0)} | {_fmt(r['time_to_475_s'])} "
                f"| {_fmt(r['steps_to_475'])} | {_fmt(r['train_wall_s'])} "
                f"| {r['greedy_mean']:.1f}{std} | {_fmt(r.get('process_wall_s'))} |")
        for name, s in results.get("summary", {}).items():
            lines.append(
                f"| **{name} mean** | | | | {_fmt(s['compile_s'])} | {_fmt(s['steps_per_s'], 0)} "
                f"| {_fmt(s['time_to_475_s'])} ({s['crossed']} crossed) | | "
                f"| {_fmt(s['greedy_mean'])} | |")
        lines.append("")
        for ratio in results.get("ratios", []):
            lines.append(
                f"- {ratio['ours']} / {ratio['peer']}: throughput **{_fmt(ratio['steps_per_s'], 2)}"
                f"×**, compile {_fmt(ratio['compile_s'], 2)}× (lower is faster), time to 475 "
                f"{_fmt(ratio['time_to_475_s'], 2)}× (lower is faster)")
        lines += ["", "(The SB3 ratio is a whole-system figure: our native in-graph env + PPO "
                  "against gymnasium's Python CartPole + torch PPO.)", ""]
    multi = results.get("multi_seed") or []
    vmapped = {(v.get("round", 0), v["agents"]): v for v in jax.get("vmapped", [])}
    if multi:
        lines += [
            "## Many agents in one compiled call (imagined_rl's seed axis vs rejax's vmap)",
            "",
            "| round | agents | env steps per agent | imagined_rl compile s "
            "| imagined_rl env steps/s | greedy ≥ 475 | rejax vmap compile s "
            "| rejax vmap env steps/s | ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in multi:
            v = vmapped.get((m.get("round", 0), m["num_seeds"]), {})
            peer = v.get("total_steps_per_s")
            lines.append(
                f"| {_round_label(m)} | {m['num_seeds']} | {m['env_steps_per_agent']:,} "
                f"| {_fmt(m['compile_s'])} "
                f"| {_fmt(m['total_steps_per_s'], 0)} | {m['fraction_solved']:.0%} "
                f"| {_fmt(v.get('compile_s'))} | {_fmt(peer, 0)} "
                f"| {_fmt(peer and m['total_steps_per_s'] / peer, 2)}× |")
        lines.append("")
    lines += _round_ratio_lines(results.get("round_ratios") or [])
    flops, peak = flops_per_env_step(), peak_flops()
    rates = [(name, s["steps_per_s"]) for name, s in results.get("summary", {}).items()]
    for n in sorted({m["num_seeds"] for m in multi}):
        rates.append((f"imagined_rl, {n} agents in one call (mean)", _mean(
            [m["total_steps_per_s"] for m in multi if m["num_seeds"] == n])))
    for n in sorted({a for _, a in vmapped}):
        rates.append((f"rejax, {n} agents vmapped (mean)", _mean(
            [v["total_steps_per_s"] for (_, a), v in vmapped.items() if a == n])))
    lines += [
        "## The physical limit",
        "",
        f"{flops['total'] / 1e3:,.0f} kFLOP per env step ({flops['parameters']:,} parameters; "
        f"acting {flops['forward'] / 1e3:.1f}k, {_hparams().optimization_epochs} update epochs "
        f"{flops['update'] / 1e3:.1f}k, Adam {flops['adam'] / 1e3:.1f}k: dense layers only, "
        "see `flops_per_env_step`). Peak fp32 of this machine: "
        f"{peak['cores']} cores x {peak['mhz']:,.0f} MHz x {peak['flops_per_cycle']} "
        f"FLOP/cycle = {peak['peak'] / 1e9:,.0f} GFLOP/s.",
        "",
        "| run | env steps/s | GFLOP/s | fraction of peak |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {_fmt(rate, 0)} | {rate * flops['total'] / 1e9:.1f} "
              f"| {rate * flops['total'] / peak['peak']:.1%} |" for name, rate in rates if rate]
    lines += ["", "One agent fills less of the machine than many on either side: a 64-wide MLP "
              "on 128-sample minibatches cannot fill the vector units, and per-op overhead, RNG "
              "and loop control take the rest; many agents in one call fill them better.", ""]
    scaling = results.get("scaling")
    if scaling:
        lines += [
            "## imagined_rl throughput against num_envs (epoch_length 128, 4 minibatches)",
            "",
            "| num_envs | iterations timed | env steps timed | compile s | env steps/s | note |",
            "|---:|---:|---:|---:|---:|---|",
        ]
        lines += [f"| {p['num_envs']} | {_fmt(p['iterations'])} | {_fmt(p['timed_env_steps'])} "
                  f"| {_fmt(p['compile_s'])} | {_fmt(p['steps_per_s'], 0)} "
                  f"| {p.get('error', '')} |" for p in scaling]
        lines.append("")
    return "\n".join(lines)


RATIO_ROWS = (("api_steps_per_s", "API env steps/s"),
              ("api_time_to_475_faster", "API time to 475, rejax's / ours"),
              ("cli_steps_per_s", "CLI env steps/s"),
              ("cli_time_to_475_faster", "CLI time to 475, rejax's / ours"))


def _round_label(run: dict[str, Any]) -> str:
    """A run's round, 1-based; "—" for a run outside the rounds (SB3's, run once)."""
    r = run.get("round", 0)  # reports written before rounds existed: all one round
    return "—" if r is None else str(r + 1)


def _round_ratio_lines(rounds: list[dict[str, float | None]]) -> list[str]:
    """The ratios against rejax, one column per round and their median (> 1: ours faster)."""
    if not rounds:
        return []
    lines = ["## Ratios against rejax, round by round (> 1: imagined_rl faster)", "",
             "Each round runs every side once (the order reversed every other round); a "
             "round's ratio compares means within that round, so the VM's drift between rounds "
             "cancels.", "",
             "| ratio | " + " | ".join(f"round {i + 1}" for i in range(len(rounds)))
             + " | median |",
             "|---|" + "---:|" * (len(rounds) + 1)]
    agents = sorted({int(k.split("_")[1]) for r in rounds for k in r if k.startswith("agents_")})
    rows = [*RATIO_ROWS, *((f"agents_{n}", f"{n} agents in one call, env steps/s")
                           for n in agents)]
    for key, label in rows:
        values = [r.get(key) for r in rounds]
        if any(v is not None for v in values):
            known = [v for v in values if v is not None]
            lines.append(f"| {label} | " + " | ".join(_fmt(v, 2) for v in values)
                         + f" | **{float(np.median(known)):.2f}** |")
    return [*lines, ""]


def _ratio(ours: dict[str, Any], theirs: dict[str, Any], names: tuple[str, str]) -> dict:
    div = lambda a, b: a / b if a and b else None
    return {"ours": names[0], "peer": names[1],
            "steps_per_s": div(ours["steps_per_s"], theirs["steps_per_s"]),
            "compile_s": div(ours["compile_s"], theirs["compile_s"]),
            "time_to_475_s": div(ours["time_to_475_s"], theirs["time_to_475_s"])}


def _round(index: int, steps: int, agents: list[int], work_dir: str) -> dict[str, Any]:
    """One round of the head-to-head parts; every run in it is tagged with ``round``."""
    log(f"round {index + 1} of {FLAGS.rounds}")
    parts = {
        "imagined": (FLAGS.skip_imagined,
                     lambda: [bench_imagined(seed, steps) for seed in range(FLAGS.seeds)]),
        "cli": (FLAGS.skip_cli,
                lambda: [bench_cli(seed, steps, work_dir) for seed in range(FLAGS.seeds)]),
        "jax": (FLAGS.skip_jax,
                lambda: bench_jax(FLAGS.seeds, steps, [] if FLAGS.skip_multi_seed else agents)),
        "multi_seed": (FLAGS.skip_multi_seed,
                       lambda: [bench_multi_seed(n, steps) for n in agents]),
    }
    order = [name for name, (skip, _) in parts.items() if not skip]
    out = {name: parts[name][1]() for name in (order[::-1] if index % 2 else order)}
    for run in (out.get("imagined", []) + out.get("cli", []) + out.get("multi_seed", [])
                + out.get("jax", {}).get("single", []) + out.get("jax", {}).get("vmapped", [])):
        run["round"] = index
    return out


def _round_ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """One round's ratios against rejax: steps/s (higher: ours faster) and time to 475
    (rejax's over ours, so higher: ours faster), one agent and many."""
    jax = r.get("jax") or {}
    theirs = [run for run in jax.get("single", []) if "error" not in run]
    out: dict[str, float | None] = {}
    for key, name in (("imagined", "api"), ("cli", "cli")):
        ours = [run for run in r.get(key, []) if "error" not in run]
        if ours and theirs:
            a, b = _summary(ours), _summary(theirs)
            out[f"{name}_steps_per_s"] = a["steps_per_s"] / b["steps_per_s"]
            out[f"{name}_time_to_475_faster"] = (b["time_to_475_s"] / a["time_to_475_s"]
                                                 if a["time_to_475_s"] and b["time_to_475_s"]
                                                 else None)
    vmapped = {v["agents"]: v["total_steps_per_s"] for v in jax.get("vmapped", [])}
    for m in r.get("multi_seed", []):
        peer = vmapped.get(m["num_seeds"])
        out[f"agents_{m['num_seeds']}"] = peer and m["total_steps_per_s"] / peer
    return out


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.scaling_point is not None:  # child of bench_scaling_point
        print(json.dumps(measure_scaling_point(FLAGS.scaling_point, FLAGS.scaling_iterations)))
        return
    if FLAGS.from_json:  # re-render a saved run's report (e.g. after adding a section)
        with open(FLAGS.from_json) as f:
            results = json.load(f)
        print(markdown(results))
        return
    steps = FLAGS.steps
    results: dict[str, Any] = {"environment": environment_info(), "requested_steps": steps,
                               "hidden": FLAGS.hidden, "env_steps": _rounded_plan(steps)[2],
                               "threshold": THRESHOLD}
    steps = results["env_steps"]  # every peer trains exactly as many steps as imagined_rl
    agents = [int(n) for n in FLAGS.num_seeds]
    work_dir = os.path.join(FLAGS.out_dir, "ppo_vs_peers_runs")
    rounds = [_round(i, steps, agents, work_dir) for i in range(FLAGS.rounds)]
    for key in ("imagined", "cli", "multi_seed"):
        if any(key in r for r in rounds):
            results[key] = [run for r in rounds for run in r.get(key, [])]
    jax_rounds = [r["jax"] for r in rounds if "jax" in r]
    if jax_rounds:
        ok = [j for j in jax_rounds if "error" not in j]
        results["jax"] = dict(ok[0] if ok else jax_rounds[0],
                              single=[run for j in ok for run in j["single"]],
                              vmapped=[run for j in ok for run in j["vmapped"]])
    if not FLAGS.skip_scaling:
        results["scaling"] = [bench_scaling_point(int(n), FLAGS.scaling_iterations)
                              for n in FLAGS.scaling_envs]
    if not FLAGS.skip_sb3:  # last: torch is imported only after the TensorFlow timings
        results["sb3"] = [dict(bench_sb3(seed, steps), round=None)  # once, after the rounds
                          for seed in range(FLAGS.seeds)]
    summary = {}
    groups = (("imagined", "imagined_rl"), ("cli", "imagined-rl train"),
              ("jax", "rejax"), ("sb3", "stable-baselines3"))
    for key, name in groups:
        runs = results.get(key)
        runs = runs.get("single") if isinstance(runs, dict) else runs
        runs = [r for r in runs or [] if "error" not in r]
        if runs:
            summary[name] = _summary(runs)
    results["summary"] = summary
    results["ratios"] = [_ratio(summary[a], summary[b], (a, b))
                         for a in ("imagined_rl", "imagined-rl train")
                         for b in ("rejax", "stable-baselines3")
                         if a in summary and b in summary]
    results["round_ratios"] = [_round_ratios(r) for r in rounds]
    report = markdown(results)
    print(report)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "ppo_vs_peers.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(FLAGS.out_dir, "ppo_vs_peers.json"), "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {FLAGS.out_dir}/ppo_vs_peers.md and .json")


if __name__ == "__main__":
    app.run(main)
