"""World-model training speed: batches drawn in the graph vs streamed by tf.data, side by side.

    python bench/world_model_training.py   # ~4 min on 2 cores; results/world_model_training.md

For each model, the same random-policy data (recorded here from the native in-graph env) and
the same trainer, ``ModelTrainer.train`` timed over ``--steps`` optimiser steps after a warm-up
(compile) of 100: ``resident_data=True`` (the default: the train split in memory, the 100 steps
between log points in one compiled call, each drawing its batch in the graph) against
``resident_data=False`` (the ``tf.data`` stream of windows, one call per step: what the
trainer did before, and still does under a ``tf.distribute`` strategy). Both include the
logging and dev-loss evaluation every 100 steps that a real run does.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
from common import code_version, cpu_name  # bench/common.py

from imagined_rl import data, registry
from imagined_rl.envs.core import random_actions
from imagined_rl.world_models.trainer import ModelRunConfig, open_run

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 1000, "timed optimiser steps per cell")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")

CASES = (  # (problem, real steps recorded, model, hparams set)
    ("gym_cartpole_random", 12_000, "vector_ensemble", "world_model_vector"),
    ("minatar_breakout_random", 50_000, "grid_conv", "world_model_grid_fast"),
)


def record(problem_name: str, steps: int, data_dir: str) -> None:
    env = registry.problem(problem_name).make_env(16, seed=0)
    data.record(env, lambda obs, key: random_actions(env.action_spec, 16, key), steps, data_dir,
                seed=0, steps_per_shard=5_000, progress=False, problem=problem_name)


def ms_per_step(model: str, hparams_set: str, data_dir: str, resident: bool, work: str) -> float:
    config = ModelRunConfig(model, hparams_set, {"resident_data": resident}, data_dir, 0)
    trainer = open_run(config, os.path.join(work, f"{model}-{resident}"), log=lambda *_: None)
    trainer.train(100, progress=False)  # compile, and the first data read
    start = time.perf_counter()
    trainer.train(100 + FLAGS.steps, progress=False)
    return (time.perf_counter() - start) / FLAGS.steps * 1e3


def main(_: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for problem_name, steps, model, hparams_set in CASES:
            data_dir = os.path.join(work, problem_name)
            record(problem_name, steps, data_dir)
            cell = {resident: ms_per_step(model, hparams_set, data_dir, resident, work)
                    for resident in (False, True)}
            rows.append({"model": model, "hparams_set": hparams_set, "data": problem_name,
                         "real_steps": steps,
                         "batch_size": int(registry.hparams(hparams_set).batch_size),
                         "streamed_ms": round(cell[False], 2), "resident_ms": round(cell[True], 2),
                         "speedup": round(cell[False] / cell[True], 2)})
            print(rows[-1], flush=True)
    lines = [f"World-model training, ms per optimiser step ({FLAGS.steps} steps, {cpu_name()}, "
             f"code {code_version()}): `python {' '.join(sys.argv)}`", "",
             "| model | set | data (random policy) | batch | tf.data stream | in memory, "
             "drawn in the graph | speed-up |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['hparams_set']} | {r['data']}, {r['real_steps']:,} steps | "
              f"{r['batch_size']} | {r['streamed_ms']} | {r['resident_ms']} | {r['speedup']}x |"
              for r in rows]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "world_model_training.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(FLAGS.out_dir, "world_model_training.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
