"""Sample efficiency: the SimPLe loop vs model-free PPO vs random, on honest real env steps.

    python bench/sample_efficiency.py                                  # everything, 3 seeds
    python bench/sample_efficiency.py --envs=breakout,freeway --seeds=1 --long_budgets=1000000
    python bench/sample_efficiency.py --envs=atari_freeway,atari_pong --seeds=1 \
        --long_budgets= --out_name=simple_atari          # SimPLe from pixels, CPU-sized
    python bench/sample_efficiency.py --envs=breakout --seeds=1 --simple=False --budgets= \
        --long_budgets=10000000 --model_free_hparams_set=ppo_minatar_long --out_name=minatar_10m

``atari_<game>`` runs ``--atari_loop_hparams_set`` (``rlmb_cpu_atari``: 26x20 frames, tiny
model; ``bench/gpu/simple_atari.sh`` runs the paper's sizes) on ``gym_<game>_random``.

For each env and seed: the SimPLe loop (its set from ``LOOPS``) runs all its epochs, and its
greedy real return is read at each budget (25k/50k/100k real env steps: the last epoch whose
real steps -- every step the real env took, counted by the data writer -- are within the
budget). Model-free PPO (the loop's PPO set as registered, on the real env through the loop's
frame stack) trains from scratch for each budget and for the long budgets (1M, and 10M where
the CPU allows), annealing its learning rate over that budget, in whole iterations never past
it (a budget below one iteration is skipped); a uniformly random policy is the floor. Every
policy is scored as the loop scores itself: the greedy policy's mean real return over the
loop's ``eval_episodes`` episodes, same env and action seeds.

Results go to ``results/sample_efficiency.jsonl`` one row per (env, seed, method, budget) as each
finishes, with the commit it ran on -- a rerun skips rows already there, so a killed bench
resumes; ``--redo=simple`` measures the loop again (new code), replacing its rows -- and then to
``results/sample_efficiency.md`` (mean +- std over seeds) and one PNG per env
(``--out_name`` changes the stem).
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
from common import code_version, cpu_name  # bench/common.py

from imagined_rl import plots, registry, rundir
from imagined_rl.envs.core import FrameStack, random_actions
from imagined_rl.hparams_lib import HParams
from imagined_rl.ppo import PPO
from imagined_rl.simple import evaluate_real, loop_problem, train_model_based

MINATAR = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
LOOPS = {  # env -> (loop set, its overrides): one set per observation kind
    "cartpole": ("rlmb_cartpole", ""),
    "pendulum": ("rlmb_pendulum", ""),
    **{g: ("rlmb_minatar", f"problem=minatar_{g}_random") for g in MINATAR},
}

flags.DEFINE_list("envs", list(LOOPS), f"envs to run: {', '.join(LOOPS)}, atari_<game>")
flags.DEFINE_string("atari_loop_hparams_set", "rlmb_cpu_atari", "the loop set of atari_<game>")
flags.DEFINE_string("loop_hparams", "", "overrides of every env's loop set, after its own "
                    "(e.g. real_ppo_learning_rate_constant=1e-3; use another --out_name)")
flags.DEFINE_string("out_name", "sample_efficiency", "stem of the result files")
flags.DEFINE_integer("seeds", 3, "seeds 0..N-1")
flags.DEFINE_list("budgets", ["25000", "50000", "100000"], "real env steps to compare at")
flags.DEFINE_list("long_budgets", ["1000000"], "model-free only (add 10000000 where time allows)")
flags.DEFINE_bool("simple", True, "run the SimPLe loop (False: baselines only)")
flags.DEFINE_list("redo", [], "methods (simple, model_free, random) to measure again for the "
                  "envs and seeds asked: their old rows are replaced (use a fresh --work_dir)")
flags.DEFINE_string("model_free_hparams_set", "",
                    "model-free PPO's set (default: the loop's own PPO set), e.g. "
                    "ppo_minatar_long for the 10M-step baselines")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")
flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "sample_efficiency_runs"),
                    "the loops' run directories (data, models; a rerun resumes them)")
FLAGS = flags.FLAGS


def loop_set(env: str) -> HParams:
    if env.startswith("atari_"):
        name, overrides = FLAGS.atari_loop_hparams_set, f"problem=gym_{env[6:]}_random"
    elif env in LOOPS:
        name, overrides = LOOPS[env]
    else:
        raise app.UsageError(f"unknown env {env!r}; known: {', '.join(LOOPS)}, atari_<game>")
    hp = registry.hparams_with_overrides(name, overrides)
    return hp.parse(FLAGS.loop_hparams) if FLAGS.loop_hparams else hp


def score(problem: Any, loop_hp: HParams, policy, seed: int, epoch: int = 0) -> float:
    """Mean real return, on the envs and seeds the loop scores itself with."""
    return float(np.mean(evaluate_real(problem, loop_hp, policy, seed, epoch)))


def model_free_hparams(loop_hp: HParams) -> tuple[str, HParams, int]:
    """Model-free PPO's set (``--model_free_hparams_set``, else the loop's own PPO set), its
    hparams and the real steps of one of its iterations."""
    name = FLAGS.model_free_hparams_set or loop_hp.ppo_hparams_set
    hp = registry.hparams(name)
    return name, hp, int(hp.epoch_length) * int(hp.num_envs)


def model_free(problem: Any, loop_hp: HParams, steps: int, seed: int) -> dict[str, Any]:
    """The loop's PPO set (or ``--model_free_hparams_set``) trained on at most ``steps`` real
    steps (whole iterations, on the loop's frame stack, learning rate annealed over the budget
    where the set anneals) and scored greedily."""
    name, hp, per_iteration = model_free_hparams(loop_hp)
    t0 = time.perf_counter()
    env = problem.make_env(int(hp.num_envs), seed=seed)
    k = int(loop_hp.get("frame_stack_size", 1))
    iterations = steps // per_iteration
    agent = PPO(FrameStack(env, k) if k > 1 else env, hp, iterations * per_iteration, seed=seed)
    agent.train(iterations)
    seconds = time.perf_counter() - t0
    ret = score(problem, loop_hp, lambda obs, key: agent.act(obs, key, greedy=True), seed)
    return {"return": ret, "real_steps": agent.env_steps, "seconds": round(seconds, 1),
            "hparams_set": name,
            "steps_per_s": round(agent.env_steps / seconds)}


def simple(loop_hp: HParams, seed: int, out: str) -> list[dict[str, Any]]:
    """The loop's per-epoch records (resuming its run directory under ``out``)."""
    t0 = time.perf_counter()
    records = train_model_based(out, loop_hp, seed=seed, progress=False)
    print(f"  SimPLe: {time.perf_counter() - t0:.0f} s", flush=True)
    return records


def claim_for_code(run_dir: str) -> None:
    """A loop's run directory resumes only under the code that began it (``code.txt``): a
    ``--redo`` on new code must not read an old finished loop's records as new ones."""
    marker, code = os.path.join(run_dir, "code.txt"), code_version()
    if os.path.exists(marker):
        with open(marker) as f:
            if (old := f.read().strip()) != code:
                raise SystemExit(f"{run_dir} holds a loop begun on code {old}, not {code}: "
                                 "pass a fresh --work_dir")
    elif os.path.exists(run_dir) and FLAGS.redo:
        raise SystemExit(f"{run_dir} holds a loop of unknown code: pass a fresh --work_dir")
    else:
        os.makedirs(run_dir, exist_ok=True)
        with open(marker, "w") as f:
            f.write(code + "\n")


def run(env: str, seed: int, done: set[tuple], path: str) -> None:
    loop_hp = loop_set(env)
    problem = loop_problem(loop_hp)
    budgets = [int(b) for b in FLAGS.budgets]

    def put(method: str, budget: int, **row: Any) -> None:
        row = {"env": env, "seed": seed, "method": method, "budget": budget, **row,
               "command": "python " + " ".join(sys.argv), "code": code_version()}
        key = (env, seed, method, budget)
        kept = [r for r in rundir.read_jsonl(path)  # a redone row replaces the old one
                if (r["env"], r["seed"], r["method"], r["budget"]) != key]
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in [*kept, row])
        os.replace(path + ".tmp", path)
        done.add((env, seed, method, budget))
        print(row, flush=True)

    if (env, seed, "random", 0) not in done:
        spec, n = problem.make_env(1).action_spec, int(loop_hp.eval_episodes)
        put("random", 0, **{"return": score(problem, loop_hp, lambda obs, key: random_actions(
            spec, n, key), seed), "real_steps": 0})
    if FLAGS.simple and any((env, seed, "simple", b) not in done for b in budgets):
        run_dir = os.path.join(FLAGS.work_dir, f"{FLAGS.out_name}-{env}-s{seed}")
        claim_for_code(run_dir)
        records = simple(loop_hp, seed, run_dir)
        for b in budgets:
            within = [r for r in records if r["real_env_steps"] <= b]
            if within and (env, seed, "simple", b) not in done:
                r = within[-1]
                put("simple", b, **{"return": r["real_return_mean"],
                                    "real_steps": r["real_env_steps"], "epoch": r["epoch"],
                                    "imagined_return": r["imagined_return_mean"]})
        put("simple_curve", 0, curve=[[r["real_env_steps"], r["real_return_mean"]]
                                      for r in records])
    per_iteration = model_free_hparams(loop_hp)[2]
    for b in budgets + [int(b) for b in FLAGS.long_budgets]:
        if b < per_iteration:  # one PPO iteration would already be past the budget
            print(f"  model-free at {b:,}: skipped (one iteration is {per_iteration:,} steps)")
        elif (env, seed, "model_free", b) not in done:
            put("model_free", b, **model_free(problem, loop_hp, b, seed))


def report(rows: list[dict[str, Any]]) -> str:
    """The markdown table: mean +- std over seeds per env, method and budget."""
    meta = f"{time.strftime('%Y-%m-%d')}, {cpu_name()}"
    commands = sorted({r.get("command", "(not recorded)") for r in rows})
    lines = [f"# Sample efficiency ({meta})", "",
             "Rows from: " + "; ".join(f"`{c}`" for c in commands), "",
             "Greedy real return (mean +- std over seeds; n = seeds) after at most the given "
             "real env steps, counted honestly. SimPLe: the loop's last epoch within the "
             "budget (its real steps in brackets); model-free PPO: trained from scratch on "
             "that budget. Code: the commits the rows ran on.", "",
             "| env | method | budget | return | n | real steps used | notes | code |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    keys = sorted({(r["env"], r["method"], r["budget"]) for r in rows
                   if r["method"] != "simple_curve"},
                  key=lambda k: (k[0], ["random", "simple", "model_free"].index(k[1]), k[2]))
    for env, method, budget in keys:
        group = [r for r in rows if (r["env"], r["method"], r["budget"]) == (env, method, budget)]
        ret = np.array([r["return"] for r in group])
        used = sorted({r["real_steps"] for r in group})
        notes = ""
        if method == "model_free":
            notes = f"{np.mean([r['steps_per_s'] for r in group]):,.0f} steps/s"
            sets = sorted({r["hparams_set"] for r in group if "hparams_set" in r})
            notes += "".join(f", {n}" for n in sets)
        elif method == "simple":
            notes = "imagined return " + ", ".join(str(r["imagined_return"]) for r in group)
        codes = ", ".join(sorted({r.get("code", "?") for r in group}))
        lines.append(f"| {env} | {method} | {budget:,} | {ret.mean():.2f} +- {ret.std():.2f} | "
                     f"{len(group)} | {', '.join(f'{u:,}' for u in used)} | {notes} | {codes} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], env: str, path: str) -> None:
    """Return vs real env steps: each SimPLe seed's epochs, model-free means, random."""
    series = {}
    for r in rows:
        if r["env"] == env and r["method"] == "simple_curve":
            xs, ys = zip(*r["curve"])
            series[f"SimPLe seed {r['seed']}"] = (xs, ys)
    mf = sorted({r["budget"] for r in rows if r["env"] == env and r["method"] == "model_free"})
    series["model-free PPO (mean)"] = (mf, [np.mean([r["return"] for r in rows if (
        r["env"], r["method"], r["budget"]) == (env, "model_free", b)]) for b in mf])
    rand = [r["return"] for r in rows if r["env"] == env and r["method"] == "random"]
    if rand and mf:
        series["random"] = ([min(mf), max(mf)], [np.mean(rand)] * 2)
    plots.curves(path, series, "real env steps (log)", "greedy real return", f"{env}",
                 style="o-", log_x=True)


def main(_: list[str]) -> None:
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    path = os.path.join(FLAGS.out_dir, FLAGS.out_name + ".jsonl")
    rows = rundir.read_jsonl(path)
    code = code_version()
    redo = lambda r: (r["method"] in FLAGS.redo and r["env"] in FLAGS.envs
                      and r["seed"] < FLAGS.seeds and r.get("code") != code)  # resumable
    done = {(r["env"], r["seed"], r["method"], r["budget"]) for r in rows if not redo(r)}
    for env in FLAGS.envs:
        loop_set(env)  # an unknown env fails before anything runs
    for env in FLAGS.envs:
        for seed in range(FLAGS.seeds):
            print(f"{env} seed {seed}", flush=True)
            run(env, seed, done, path)
    rows = rundir.read_jsonl(path)
    for env in sorted({r["env"] for r in rows if r["method"] != "random"}):
        plot(rows, env, os.path.join(FLAGS.out_dir, f"{FLAGS.out_name}_{env}.png"))
    text = report(rows)
    with open(os.path.join(FLAGS.out_dir, FLAGS.out_name + ".md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
