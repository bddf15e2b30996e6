"""Sample efficiency: the SimPLe loop against model-free PPO on the same real env steps.

    python bench/simple_vs_model_free.py                       # rlmb_minatar_breakout, 2 seeds
    python bench/simple_vs_model_free.py --loop_hparams_set=rlmb_cartpole --seeds=1

For each seed: the SimPLe loop (``imagined_rl.simple``) runs its epochs; model-free PPO (the
loop's own PPO set as registered -- the loop's ``ppo_hparams`` overrides are for imagination,
e.g. 64 imagined envs -- on the real env, through the loop's frame stack) trains for the
real env steps the loop used by each epoch's end (every step its real env took, counted by the
data writer; PPO takes whole iterations, never more steps than the loop), from scratch each
time (so it anneals its learning rate over that budget, its best use of it); a uniformly
random policy is the floor. All are scored as the loop scores itself: the greedy policy's
mean real return over the loop's ``eval_episodes`` episodes, with the same env and action
seeds.
Writes ``results/<out_name>.md`` and ``.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_name  # bench/common.py

from imagined_rl import registry
from imagined_rl.envs.core import FrameStack, random_actions
from imagined_rl.ppo import PPO
from imagined_rl.simple import evaluate_real, loop_problem, train_model_based

flags.DEFINE_string("loop_hparams_set", "rlmb_minatar_breakout", "SimPLe loop set")
flags.DEFINE_string("loop_hparams", "", "overrides of the loop set")
flags.DEFINE_integer("seeds", 2, "seeds 0..N-1")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")
flags.DEFINE_string("out_name", "", "output file stem (default simple_vs_model_free_<problem>)")
FLAGS = flags.FLAGS


def score(problem: Any, loop_hp: Any, policy, seed: int, epoch: int) -> float:
    """Mean real return, on the envs and seeds the loop scores itself with."""
    return float(np.mean(evaluate_real(problem, loop_hp, policy, seed, epoch)))


def model_free(problem: Any, loop_hp: Any, steps: int, seed: int,
               epoch: int) -> tuple[float, float, int]:
    """Greedy real return of the loop's PPO set trained on at most ``steps`` real steps (whole
    iterations, on the loop's frame stack); seconds; the real steps it took."""
    hp = registry.hparams(loop_hp.ppo_hparams_set)
    t0 = time.perf_counter()
    env = problem.make_env(int(hp.num_envs), seed=seed)
    k = int(loop_hp.get("frame_stack_size", 1))
    per_iteration = int(hp.epoch_length) * int(hp.num_envs)
    iterations = max(1, steps // per_iteration)  # whole iterations, not more than the loop's
    agent = PPO(FrameStack(env, k) if k > 1 else env, hp, iterations * per_iteration,
                seed=seed)  # so the learning rate anneals to 0 at the end of the budget
    agent.train(iterations)  # in compiled calls of iterations_per_call
    seconds = time.perf_counter() - t0
    policy = lambda obs, key: agent.act(obs, key, greedy=True)
    return score(problem, loop_hp, policy, seed, epoch), seconds, agent.env_steps


def main(_: list[str]) -> None:
    loop_hp = registry.hparams_with_overrides(FLAGS.loop_hparams_set, FLAGS.loop_hparams)
    problem = loop_problem(loop_hp)
    rows: list[dict[str, Any]] = []
    spec, n = problem.make_env(1, seed=0).action_spec, int(loop_hp.eval_episodes)
    random_policy = lambda obs, key: random_actions(spec, n, key)
    for seed in range(FLAGS.seeds):
        floor = score(problem, loop_hp, random_policy, seed, 0)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            records = train_model_based(out, loop_hp, seed=seed, progress=False)
            simple_s = time.perf_counter() - t0
        for r in records:
            mf, mf_s, mf_steps = model_free(problem, loop_hp, int(r["real_env_steps"]), seed,
                                            r["epoch"])
            rows.append({"seed": seed, "epoch": r["epoch"], "real_steps": r["real_env_steps"],
                         "model_free_steps": mf_steps,
                         "simple_return": r["real_return_mean"], "model_free_return": mf,
                         "random_return": floor, "imagined_return": r["imagined_return_mean"],
                         "model_free_seconds": round(mf_s, 1),
                         "simple_seconds": round(simple_s, 1)})
            print(rows[-1], flush=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
            "loop_hparams_set": FLAGS.loop_hparams_set, "loop_hparams": FLAGS.loop_hparams,
            "loop": json.loads(loop_hp.to_json()), "seeds": FLAGS.seeds,
            "eval_episodes_loop": int(loop_hp.eval_episodes)}
    name = FLAGS.out_name or f"simple_vs_model_free_{problem.name}"
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, name + ".json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(os.path.join(FLAGS.out_dir, name + ".md"), "w") as f:
        f.write(report(meta, rows, problem.name))
    print(report(meta, rows, problem.name))


def report(meta: dict, rows: list[dict], problem: str) -> str:
    lines = [f"# SimPLe vs model-free PPO on {problem} ({meta['date']}, {meta['cpu']})", "",
             f"Command: `python bench/simple_vs_model_free.py --loop_hparams_set="
             f"{meta['loop_hparams_set']}"
             + (f" --loop_hparams={meta['loop_hparams']}" if meta["loop_hparams"] else "")
             + f" --seeds={meta['seeds']}`", "",
             "Greedy real return after the same real env steps, each policy scored as the loop "
             f"scores itself ({meta['eval_episodes_loop']} episodes, the same env and action "
             "seeds). Imagined: the mean "
             "return of the imagined episodes (truncated at the loop's horizon) at the end of "
             "the epoch.", "",
             "| seed | epoch | real steps (SimPLe / model-free) | SimPLe | model-free PPO | random "
             "| SimPLe / model-free | imagined | SimPLe wall s (all epochs) | model-free wall s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["simple_return"] / r["model_free_return"] if r["model_free_return"] else None
        lines.append(
            f"| {r['seed']} | {r['epoch']} | {r['real_steps']:,} / {r['model_free_steps']:,} | "
            f"{r['simple_return']:.2f} | "
            f"{r['model_free_return']:.2f} | {r['random_return']:.2f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {r['imagined_return']} | "
            f"{r['simple_seconds']} | {r['model_free_seconds']} |")
    last = max(r["epoch"] for r in rows)
    final = [r for r in rows if r["epoch"] == last]
    s, m = np.mean([r["simple_return"] for r in final]), np.mean(
        [r["model_free_return"] for r in final])
    lines += ["", f"- after the last epoch ({final[0]['real_steps']:,} real steps), mean over "
              f"seeds: SimPLe **{s:.2f}**, model-free PPO **{m:.2f}**, random "
              f"{np.mean([r['random_return'] for r in final]):.2f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
