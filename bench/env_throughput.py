"""Env steps/s: native in-graph CartPole vs gymnasium, and the adapter vs the raw envs.

    python bench/env_throughput.py                 # writes bench/results/env_throughput.md

All figures are random-policy env steps per second on this machine, in one run:
1. native TF CartPole: a ``tf.while_loop`` of random actions and ``env.step``, XLA-compiled,
   for N = 1 ... 4096 envs (compile excluded);
2. gymnasium CartPole-v1: one env in a Python loop, and a ``SyncVectorEnv`` of 8;
3. the gymnasium adapter (``GymEnv``, host steps through ``tf.numpy_function`` inside a compiled
   rollout loop) vs the same gymnasium vector env stepped directly, for CartPole, MinAtar
   Breakout and ALE Pong (SimPLe's 105x80 RGB preprocessing);
4. the five MinAtar games: native (XLA) at N = 1, 64, 1024 vs the ``minatar`` package itself
   (one env in a Python loop, the real simulator) vs the adapter over it (8 envs).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import gymnasium as gym
import numpy as np
import tensorflow as tf
from absl import app, flags
from common import cpu_name, gym_single_sps, in_graph_sps, vector_sps  # bench/common.py

from imagined_rl.envs.atari import make_atari, make_minatar
from imagined_rl.envs.classic import CartPole
from imagined_rl.envs.gym_adapter import GymEnv
from imagined_rl.envs.minatar import GAMES

flags.DEFINE_float("seconds", 3.0, "target seconds per measurement")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")
flags.DEFINE_bool("minatar", True, "measure the five MinAtar games (native, package, adapter)")
FLAGS = flags.FLAGS


def minatar_sps(game: str, seconds: float) -> float:
    """The ``minatar`` package: one env, random minimal-set actions, in a Python loop."""
    from minatar import Environment

    env, rng = Environment(game), np.random.default_rng(0)
    actions = env.minimal_action_set()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in rng.choice(actions, 1000):
            _, done = env.act(a)
            if done:
                env.reset()
        steps += 1000
    return steps / (time.perf_counter() - start)


def main(_: list[str]) -> None:
    rows: list[tuple[str, str, float]] = []

    def add(group: str, what: str, sps: float) -> None:
        rows.append((group, what, sps))
        print(f"{group:28s} {what:44s} {sps:14,.0f} steps/s", flush=True)

    for n in (1, 16, 256, 4096):
        add("native CartPole (XLA)", f"N={n}",
            in_graph_sps(CartPole(n), 1000 if n < 256 else 200, FLAGS.seconds))
    add("gymnasium CartPole", "1 env, Python loop", gym_single_sps("CartPole-v1", FLAGS.seconds))
    add("gymnasium CartPole", "SyncVectorEnv, 8 envs",
        vector_sps(gym.make_vec("CartPole-v1", 8, vectorization_mode="sync"), FLAGS.seconds))

    adapters = [
        ("CartPole-v1", lambda: GymEnv("CartPole-v1", 8)),
        ("MinAtar breakout", lambda: make_minatar("breakout", 8)),
        ("ALE Pong 105x80 RGB", lambda: make_atari("pong", 8)),
    ]
    for name, make in adapters:
        env = make()
        add(name, "adapter GymEnv, 8 envs, in a tf.function loop",
            in_graph_sps(env, 100, FLAGS.seconds))
        add(name, "same vector env stepped directly", vector_sps(env.venv, FLAGS.seconds))
        env.close()

    ratios = []
    for game, cls in GAMES.items() if FLAGS.minatar else ():
        group = f"MinAtar {game}"
        native = {n: in_graph_sps(cls(n, max_episode_steps=10_000), 1000 if n < 256 else 200,
                                  FLAGS.seconds) for n in (1, 64, 1024)}
        for n, sps in native.items():
            add(group, f"native (XLA), N={n}", sps)
        package = minatar_sps(game, FLAGS.seconds)
        add(group, "minatar package, 1 env, Python loop", package)
        env = make_minatar(game, 8)
        add(group, "adapter over the package, 8 envs", in_graph_sps(env, 100, FLAGS.seconds))
        env.close()
        ratio = native[1024] / package  # one decimal below 10x (Seaquest's 0.93x is not 1x)
        ratios.append(f"{game} {ratio:.{1 if ratio < 10 else 0}f}x")

    native = {w: s for g, w, s in rows if g.startswith("native")}
    single = next(s for g, w, s in rows if w.startswith("1 env"))
    meta = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gymnasium": gym.__version__,
            "cpu": cpu_name(), "command": "python " + " ".join(sys.argv)}
    lines = [f"# Env throughput ({meta['date']}, {meta['cpu']}, TF {meta['tensorflow']})", "",
             f"Command: `{meta['command']}`", "", "| env | setting | steps/s |", "|---|---|---|"]
    lines += [f"| {g} | {w} | {s:,.0f} |" for g, w, s in rows]
    lines += ["", f"Native CartPole at N=4096 is {native['N=4096'] / single:.0f}x one gymnasium "
              "CartPole in a Python loop."]
    if ratios:
        lines += ["", "Native MinAtar at N=1024 vs the minatar package (one env, Python loop): "
                  + ", ".join(ratios) + "."]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "env_throughput.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(FLAGS.out_dir, "env_throughput.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
