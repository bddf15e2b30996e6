"""What `imagined-rl train`'s loop costs beyond the compiled train calls it sequences.

    python bench/loop_overhead.py             # writes bench/results/loop_overhead.md

Runs ``loops.train_model_free`` (the CLI's loop: metrics.jsonl, TensorBoard, progress bar,
checkpoints) on ``ppo_cartpole`` with ``PPO.train`` timed, and reports the share of the loop's
wall time spent outside the train calls: the CLI's overhead over the Python API, measured in
one process so the VM's run-to-run noise (±15% on single-agent throughput) cancels out. The
first two calls (compile) are left out.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags
from common import code_version, cpu_name  # bench/common.py

from imagined_rl import loops, registry
from imagined_rl.ppo import PPO

flags.DEFINE_integer("steps", 500_000, "env steps per run")
flags.DEFINE_integer("seeds", 3, "runs (seeds 0..n-1)")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")
FLAGS = flags.FLAGS


def measure(seed: int, steps: int) -> dict:
    """One run: loop wall time after the second call, and the part of it inside train calls."""
    inside: list[float] = []
    train = PPO.train

    def timed(self, iterations=None):
        t = time.perf_counter()
        out = train(self, iterations)
        inside.append(time.perf_counter() - t)
        return out

    PPO.train = timed
    try:
        hp = registry.hparams("ppo_cartpole")
        hp.set_hparam("train_steps", steps)
        run_dir = tempfile.mkdtemp(prefix="loop_overhead_")
        loops.train_model_free(loops.RunConfig("CartPole-v1", "ppo_cartpole", hp.values(), seed),
                               run_dir, eval_episodes=4, progress=True, log=lambda _: None)
    finally:
        PPO.train = train
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    wall = rows[-1]["wall_time_s"] - rows[1]["wall_time_s"]  # calls 2 .. last
    ins = sum(inside[2:])
    return {"seed": seed, "calls": len(inside) - 2, "loop_s": wall, "train_s": ins,
            "outside_pct": 100 * (1 - ins / wall), "outside_ms_per_call": 1e3 * (wall - ins) /
            (len(inside) - 2)}


def main(_) -> None:
    runs = [measure(seed, FLAGS.steps) for seed in range(FLAGS.seeds)]
    lines = [
        "# imagined-rl train: the loop's cost beyond the compiled train calls", "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- code: {code_version()}; CPU: {cpu_name()}",
        f"- command: `python bench/loop_overhead.py --steps={FLAGS.steps} --seeds={FLAGS.seeds}`",
        "", "| seed | calls timed | loop s | in train calls s | outside % | outside ms per call |",
        "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['seed']} | {r['calls']} | {r['loop_s']:.3f} | {r['train_s']:.3f} | "
              f"{r['outside_pct']:.1f} | {r['outside_ms_per_call']:.2f} |" for r in runs]
    mean = np.mean([r["outside_pct"] for r in runs])
    lines += ["", f"Mean share outside the train calls: **{mean:.1f}%**."]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "loop_overhead.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(FLAGS.out_dir, "loop_overhead.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
