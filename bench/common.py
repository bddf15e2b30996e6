"""Timers shared by the benchmarks: random-action env steps/s, measured the same way everywhere.

Each runs for about ``seconds`` of wall time after a warm-up (compile) call.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable

import gymnasium as gym
import tensorflow as tf

from imagined_rl.envs.core import BatchEnv, make_key, random_actions, split


def rollout_fn(env: BatchEnv, steps: int) -> Callable:
    """A compiled loop of ``steps`` random-action env steps (XLA when the env allows it)."""

    def run(state, key):
        def body(i, state, key):
            k_act, k_step, key = tf.unstack(split(key, 3))
            action = random_actions(env.action_spec, env.num_envs, k_act)
            state, _ = env.step(state, tf.cast(action, env.action_spec.dtype), k_step)
            return i + 1, state, key

        _, state, key = tf.while_loop(lambda i, *_: i < steps, body, (0, state, key),
                                      maximum_iterations=steps)
        return state, key

    return tf.function(run, jit_compile=env.jit_compatible)


def in_graph_sps(env: BatchEnv, steps: int, seconds: float) -> float:
    """Env steps/s of ``env`` in a compiled loop, compile excluded."""
    run = rollout_fn(env, steps)
    state, _ = env.reset(make_key(0))
    key = make_key(1)
    state, key = run(state, key)  # compile
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        state, key = run(state, key)
        reps += 1
    return reps * steps * env.num_envs / (time.perf_counter() - t0)


def gym_single_sps(env_id: str, seconds: float) -> float:
    """One gymnasium env stepped in a Python loop."""
    env = gym.make(env_id)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        n += 1000
    return n / (time.perf_counter() - t0)


def vector_sps(venv: gym.vector.VectorEnv, seconds: float) -> float:
    """A gymnasium vector env stepped directly (it auto-resets)."""
    venv.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            venv.step(venv.action_space.sample())
        n += 50 * venv.num_envs
    return n / (time.perf_counter() - t0)


def cpu_name() -> str:
    """The CPU model and core count, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor()


def code_version() -> str:
    """The commit the bench ran on (``+dirty`` with uncommitted code changes), for result rows."""
    here = os.path.dirname(os.path.abspath(__file__))
    git = lambda *a: subprocess.run(["git", "-C", here, *a], capture_output=True, text=True,
                                    check=False).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    code = [f":(top){p}" for p in ("imagined_rl", "hparams", "problems", "bench/*.py")]
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", *code)
                  else "")
