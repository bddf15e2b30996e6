"""Imagined steps/s of every world-model family vs the real env's steps/s, params and FLOPs.

    python bench/imagination_throughput.py        # writes bench/results/imagination_throughput.md

One run measures, on this machine:

1. Imagination: each family's ``predict`` in a compiled open-loop rollout -- a ``tf.while_loop``
   of H steps whose predicted observation is fed back into the next step's input window, with
   random actions -- at batch sizes 1, 16, 256, 1024 (``--batch_sizes``), XLA-compiled
   (``jit_compile=True``) unless that fails, in which case the plain graph runs and the row
   says so. Families and data specs: ``vector_ensemble`` on a CartPole-like spec (obs (4,)
   float32, Discrete(2)), ``grid_conv`` on MinAtar Breakout's ((10, 10, 4) uint8, Discrete(3)),
   ``next_frame_basic_deterministic`` and ``next_frame_basic_stochastic_discrete`` on Pong's
   SimPLe frames ((105, 80, 3) uint8 PNG, Discrete(6)), each with its default hparams set, plus
   the stochastic model with ``next_frame_tiny`` (the full models are slow on a CPU). Models
   are randomly initialised (throughput does not depend on the weights); the ``DataSpec`` is
   built directly, nothing is recorded. Each call of the compiled rollout starts from the same
   initial window (so untrained float predictions cannot run off to inf over many calls); its
   trip count H is a runtime input (``--horizon``, 50 by default, SimPLe's rollout length),
   lowered for one cell only when a single call of H steps would outlast ``--seconds``, and a
   cell whose estimated step time (from the previous batch size, scaled linearly) or pixel
   logits (``B x H x W x 3 x 256`` float32) exceed ``--max_cell_seconds`` / ``--max_memory_gb``
   is skipped and reported as skipped. Compilation is excluded from the timing. ``done`` is
   computed but ignored (an open-loop rollout does not reset).
2. The real envs, by the method of ``bench/env_throughput.py`` (its helpers are repeated here,
   since importing that script would register its absl flags a second time): native in-graph
   CartPole at N = 1 and 1024 (XLA), gymnasium CartPole (one env in a Python loop and a
   ``SyncVectorEnv`` of 8), MinAtar Breakout and ALE Pong (SimPLe's 105x80 RGB via
   ``make_atari``), each as the ``GymEnv`` adapter of 8 envs in a ``tf.function`` loop and as the
   same gymnasium vector env stepped directly.
3. Trainable parameters (``model.train_variables``) and FLOPs per predicted step per sample:
   TF's graph profiler (``model_analyzer.profile`` with
   ``ProfileOptionBuilder.float_operation()``) on the graph of ``tf.function(model.predict)``
   at batch 1. It counts the ops in TF's FLOP registry (matmuls, convolutions, transposed
   convolutions, elementwise arithmetic) and leaves out the few it has no entry for (random
   number generation, argmax, casts), so the figure is a slight undercount. The vector
   ensemble's figure covers all of its members (``predict`` runs every member, then picks one).

The claims checked: imagination throughput of the vector model exceeds native CartPole (at the
same batch size) and gymnasium CartPole, and that of the grid model exceeds MinAtar Breakout.
"Best imagined" is the highest steps/s over the batch sizes; the real envs' figures are what
one process gets (a gymnasium ``SyncVectorEnv`` steps its envs one after another in Python, so
8 envs stand for any larger number). The report prints whether each claim holds.

GPU measurement (not run here: this machine has no GPU). The issue asks for the RGB model's
imagination rate on a GPU in bfloat16 + XLA, to compare with SimPLe's published figure of
about 32 imagined frames/s on a P100 (as the issue quotes it). On a machine with a GPU and a
CUDA build of TensorFlow, run

    python bench/imagination_throughput.py --mixed_precision=mixed_bfloat16 \\
        --families=rgb --batch_sizes=1,16,64,256 --max_memory_gb=60 --max_cell_seconds=120 \\
        --skip_real_envs --out_name=imagination_throughput_gpu

``--mixed_precision`` sets the RGB models' ``mixed_precision`` hparam (Keras dtype policy of
the convolutions, norms and injections; variables, pixel logits and heads stay float32); the
vector and grid models have no such option and always run in float32. TF places the ops on
the GPU by itself, and the header of the report names the device. Compare steps/s at batch 1
(SimPLe imagined one frame at a time per env) and at the batch PPO would use.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf
from absl import app, flags
from common import cpu_name, gym_single_sps, in_graph_sps, vector_sps  # bench/common.py
from tensorflow.python.profiler import model_analyzer, option_builder

from imagined_rl import registry
from imagined_rl.data import DataSpec
from imagined_rl.envs.atari import make_atari, make_minatar
from imagined_rl.envs.classic import CartPole
from imagined_rl.envs.core import make_key, split
from imagined_rl.envs.simulated import FrameStore, SimulatedBatchEnv
from imagined_rl.ppo import PPO
from imagined_rl.world_models.base import WorldModel, observation_kind

FAMILY_GROUPS = ("vector", "grid", "rgb")
flags.DEFINE_float("seconds", 3.0, "target seconds per measurement (compile excluded)")
flags.DEFINE_list("batch_sizes", ["1", "16", "256", "1024"], "imagination batch sizes")
flags.DEFINE_integer("horizon", 50, "steps per compiled open-loop rollout (SimPLe used 50)")
flags.DEFINE_float("max_cell_seconds", 20.0,
                   "skip a batch size whose estimated time (compile call + one timed step) "
                   "exceeds this, estimated from the previous batch size")
flags.DEFINE_float("max_memory_gb", 0.0,
                   "skip an RGB batch size whose pixel logits (B x H x W x 3 x 256 float32, "
                   "counted twice for temporaries) exceed this; 0: a quarter of available RAM")
flags.DEFINE_list("families", list(FAMILY_GROUPS), "which of vector, grid, rgb to measure")
flags.DEFINE_list("hparams_sets", [], "only the model rows with these hparams sets (default all)")
flags.DEFINE_enum("mixed_precision", "", ["", "mixed_bfloat16", "mixed_float16"],
                  "dtype policy of the RGB models (their mixed_precision hparam)")
flags.DEFINE_bool("skip_real_envs", False, "leave out the real-env measurements")
flags.DEFINE_list("pipeline_batch_sizes", ["16"], "imagined envs of the full PPO-in-imagination "
                  "pipeline on pixels (RGB models; empty: skip it); a GPU takes 16,64,256")
flags.DEFINE_list("pipeline_precisions", ["float32", "mixed_bfloat16"],
                  "dtype policies of the RGB models in the pipeline measurement")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"), "output")
flags.DEFINE_string("out_name", "imagination_throughput", "output file stem (.md and .json)")
FLAGS = flags.FLAGS

_PIXEL_VALUES = 256
CARTPOLE = DataSpec("cartpole", (4,), "float32", "float", {"kind": "discrete", "n": 2})
BREAKOUT = DataSpec("minatar_breakout", (10, 10, 4), "uint8", "bytes",
                    {"kind": "discrete", "n": 3})
PONG = DataSpec("pong", (105, 80, 3), "uint8", "png", {"kind": "discrete", "n": 6})

# (group, model name, hparams set, spec, the real env the model stands in for)
MODELS = [
    ("vector", "vector_ensemble", "world_model_vector", CARTPOLE, "CartPole"),
    ("grid", "grid_conv", "world_model_grid", BREAKOUT, "MinAtar Breakout"),
    ("grid", "grid_conv", "world_model_grid_fast", BREAKOUT, "MinAtar Breakout"),
    ("rgb", "next_frame_basic_deterministic", "next_frame_basic_deterministic", PONG,
     "ALE Pong"),
    ("rgb", "next_frame_basic_stochastic_discrete", "next_frame_basic_stochastic_discrete",
     PONG, "ALE Pong"),
    ("rgb", "next_frame_basic_stochastic_discrete", "next_frame_tiny", PONG, "ALE Pong"),
]
# The RGB models of the full-pipeline measurement (PPO iterations in imagination on pixels).
PIPELINE_MODELS = [("next_frame_basic_deterministic", "next_frame_basic_deterministic"),
                   ("next_frame_basic_stochastic_discrete", "next_frame_basic_stochastic_discrete"),
                   ("next_frame_basic_stochastic_discrete", "next_frame_tiny")]


# ----------------------------------------------------------------------------------------------
# Imagination.


def build_model(name: str, hparams_set: str, spec: DataSpec) -> WorldModel:
    hp = registry.hparams(hparams_set)
    if "mixed_precision" in hp:
        hp.mixed_precision = FLAGS.mixed_precision
    return registry.model(name)(spec, hp)


def num_params(model: WorldModel) -> int:
    return int(sum(np.prod(v.shape.as_list(), dtype=np.int64) for v in model.train_variables))


def input_specs(model: WorldModel, batch: int) -> tuple[tf.TensorSpec, ...]:
    spec = model.spec
    return (tf.TensorSpec([batch, model.history, *spec.obs_shape], tf.as_dtype(spec.obs_dtype)),
            tf.TensorSpec([batch], tf.int32), tf.TensorSpec([2], tf.int32))


def profiled_flops(model: WorldModel) -> int:
    """FLOPs of one ``predict`` at batch 1, from TF's graph profiler (see the docstring)."""
    graph = tf.function(model.predict).get_concrete_function(*input_specs(model, 1)).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def rollout_fn(model: WorldModel, jit: bool) -> Callable:
    """``run(window, key, steps) -> (reward sum [B], last window)``: ``steps`` open-loop
    predictions from ``window`` ``[B, k, *obs]``, each fed back as the newest input frame."""
    n_actions = int(model.spec.action["n"])

    def run(window: tf.Tensor, key: tf.Tensor, steps: tf.Tensor):
        def body(i, window, total, key):
            k_act, k_model, key = tf.unstack(split(key, 3))
            batch = tf.shape(window)[0]
            action = tf.random.stateless_uniform([batch], k_act, 0, n_actions, dtype=tf.int32)
            obs, reward, _ = model.predict(window, action, k_model)
            window = tf.concat([window[:, 1:], obs[:, None]], axis=1)
            return i + 1, window, total + reward, key

        total = tf.zeros([tf.shape(window)[0]], tf.float32)
        _, window, total, _ = tf.while_loop(lambda i, *_: i < steps, body,
                                            (tf.constant(0), window, total, key))
        return total, window

    return tf.function(run, jit_compile=jit)


def initial_window(model: WorldModel, batch: int) -> tf.Tensor:
    spec, rng = model.spec, np.random.default_rng(0)
    shape = [batch, model.history, *spec.obs_shape]
    if spec.obs_dtype == "float32":
        return tf.constant(rng.normal(0.0, 0.1, shape).astype(np.float32))
    high = 256 if observation_kind(spec) == "rgb" else 2
    return tf.constant(rng.integers(0, high, shape).astype(spec.obs_dtype))


def logits_bytes(model: WorldModel, batch: int) -> int:
    """Peak-memory proxy: the RGB models' float32 pixel logits, twice (0 for other models)."""
    if observation_kind(model.spec) != "rgb":
        return 0
    return 2 * 4 * batch * int(np.prod(model.spec.obs_shape)) * _PIXEL_VALUES


def measure_cell(model: WorldModel, batch: int, runs: dict[str, Any]) -> dict[str, Any]:
    """Imagined steps/s at one batch size. ``runs`` holds the model's compiled rollout: the
    first batch size tries XLA and falls back to a plain graph (recorded) if it fails."""
    window, key, one = initial_window(model, batch), make_key(1), tf.constant(1)
    cell: dict[str, Any] = {}
    t0 = time.perf_counter()
    if "run" not in runs:
        try:
            runs["run"], runs["jit"] = rollout_fn(model, True), True
            runs["run"](window, key, one)[0].numpy()
        except (tf.errors.OpError, ValueError, TypeError) as e:
            runs["jit_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            print(f"  XLA failed ({runs['jit_error']}); plain graph instead", flush=True)
            runs["run"], runs["jit"] = rollout_fn(model, False), False
            t0 = time.perf_counter()
    run = runs["run"]
    run(window, key, one)[0].numpy()  # compile for this shape (or nothing) + one step
    cell["compile_s"] = round(time.perf_counter() - t0, 2)
    cell["jit"] = runs["jit"]
    t0 = time.perf_counter()
    run(window, key, one)[0].numpy()
    t1 = time.perf_counter() - t0
    horizon = max(1, min(FLAGS.horizon, int(FLAGS.seconds / max(t1, 1e-9))))
    steps = tf.constant(horizon)
    reps, t0 = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - t0 < FLAGS.seconds:
        key = split(key, 1)[0]
        run(window, key, steps)[0].numpy()
        reps += 1
    elapsed = time.perf_counter() - t0
    cell.update(sps=reps * horizon * batch / elapsed, horizon=horizon, calls=reps,
                seconds=round(elapsed, 2))
    return cell


def measure_model(group: str, name: str, hparams_set: str, spec: DataSpec,
                  real: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = build_model(name, hparams_set, spec)
    row: dict[str, Any] = {
        "group": group, "model": name, "hparams": hparams_set, "real_env": real,
        "precision": (FLAGS.mixed_precision or "float32") if group == "rgb" else "float32",
        "params": num_params(model), "history": model.history, "batches": {},
    }
    try:
        row["flops_per_step"] = profiled_flops(model)
    except Exception as e:  # the v1 profiler is best effort in TF 2.x
        row["flops_per_step"] = None
        row["flops_error"] = f"{type(e).__name__}: {e}"
    print(f"{name} [{hparams_set}]: {row['params']:,} params, "
          f"{row['flops_per_step'] or 0:,} FLOPs/step (build + profile "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    memory = FLAGS.max_memory_gb * 2**30 or _available_memory() / 4
    runs: dict[str, Any] = {}
    per_sample = None  # seconds per imagined step per sample, at the last measured batch
    for batch in (int(b) for b in FLAGS.batch_sizes):
        need = logits_bytes(model, batch)
        estimate = None if per_sample is None else 2 * per_sample * batch
        if need > memory:
            cell = {"skipped": f"pixel logits ~{need / 2**30:.1f} GiB > "
                               f"{memory / 2**30:.1f} GiB limit"}
        elif estimate is not None and estimate > FLAGS.max_cell_seconds:
            cell = {"skipped": f"est. {estimate:.0f} s for compile call + one step > "
                               f"{FLAGS.max_cell_seconds:.0f} s limit"}
        else:
            cell = measure_cell(model, batch, runs)
            per_sample = 1.0 / cell["sps"]
        row["batches"][str(batch)] = cell
        if "sps" in cell:
            print(f"  B={batch:<5d} {cell['sps']:14,.1f} imagined steps/s  (H={cell['horizon']}, "
                  f"jit={cell['jit']}, compile {cell['compile_s']} s)", flush=True)
        else:
            print(f"  B={batch:<5d} skipped: {cell['skipped']}", flush=True)
    measured = [c["sps"] for c in row["batches"].values() if "sps" in c]
    row["best_sps"] = max(measured) if measured else None
    row["jit"] = sorted({c["jit"] for c in row["batches"].values() if "jit" in c})
    if "jit_error" in runs:
        row["jit_error"] = runs["jit_error"]
    return row


# ----------------------------------------------------------------------------------------------
# The real envs (the method of bench/env_throughput.py).


def measure_real_envs(groups: set[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(env: str, setting: str, sps: float) -> None:
        rows.append({"env": env, "setting": setting, "sps": sps})
        print(f"{env:18s} {setting:46s} {sps:14,.0f} steps/s", flush=True)

    if "vector" in groups:
        for n in (1, 1024):
            add("CartPole", f"native in-graph (XLA), N={n}",
                in_graph_sps(CartPole(n), 1000 if n == 1 else 200, FLAGS.seconds))
        add("CartPole", "gymnasium, 1 env, Python loop",
            gym_single_sps("CartPole-v1", FLAGS.seconds))
        add("CartPole", "gymnasium SyncVectorEnv, 8 envs",
            vector_sps(gym.make_vec("CartPole-v1", 8, vectorization_mode="sync"),
                       FLAGS.seconds))
    makers = {"grid": ("MinAtar Breakout", lambda: make_minatar("breakout", 8)),
              "rgb": ("ALE Pong", lambda: make_atari("pong", 8))}
    for group, (name, make) in makers.items():
        if group not in groups:
            continue
        env = make()
        add(name, "adapter GymEnv, 8 envs, tf.function loop", in_graph_sps(env, 100, FLAGS.seconds))
        add(name, "gymnasium vector env, 8 envs, direct", vector_sps(env.venv, FLAGS.seconds))
        env.close()
    return rows


# ----------------------------------------------------------------------------------------------
# Claims and the report.


def check_claims(models: list[dict], real: list[dict]) -> list[dict[str, Any]]:
    """Each claim: what is compared, both figures, and whether imagined > real."""
    sps = {(r["env"], r["setting"]): r["sps"] for r in real}
    claims = []

    def claim(text: str, row: dict | None, batch: str | None, env: str, setting: str) -> None:
        if row is None or (env, setting) not in sps:
            return
        imagined = row["best_sps"] if batch is None else row["batches"].get(batch, {}).get("sps")
        if imagined is None:
            return
        where = "best over batch sizes" if batch is None else f"B={batch}"
        claims.append({"claim": text, "model": f"{row['model']} [{row['hparams']}] ({where})",
                       "real": f"{env}: {setting}", "imagined_sps": imagined,
                       "real_sps": sps[(env, setting)], "ratio": imagined / sps[(env, setting)],
                       "holds": bool(imagined > sps[(env, setting)])})

    vector = next((r for r in models if r["model"] == "vector_ensemble"), None)
    for n in ("1", "1024"):
        claim("vector model > native CartPole (same batch)", vector, n, "CartPole",
              f"native in-graph (XLA), N={n}")
    for setting in ("gymnasium, 1 env, Python loop", "gymnasium SyncVectorEnv, 8 envs"):
        claim("vector model > gymnasium CartPole", vector, None, "CartPole", setting)
        claim("vector model > gymnasium CartPole", vector, "1", "CartPole", setting)
    grids = [r for r in models if r["model"] == "grid_conv"]
    for setting in ("gymnasium vector env, 8 envs, direct",
                    "adapter GymEnv, 8 envs, tf.function loop"):
        for grid in grids:
            claim("grid model > MinAtar Breakout", grid, None, "MinAtar Breakout", setting)
    return claims


def reference(row: dict, real: list[dict]) -> dict | None:
    """The fastest real-env figure for the env a model stands in for (the hardest bar)."""
    same = [r for r in real if r["env"] == row["real_env"]]
    return max(same, key=lambda r: r["sps"]) if same else None


def report(meta: dict, models: list[dict], real: list[dict], claims: list[dict]) -> str:
    batches = [str(int(b)) for b in FLAGS.batch_sizes]
    lines = [f"# Imagination throughput ({meta['date']}, {meta['device']}, "
             f"TF {meta['tensorflow']})", "", f"Command: `{meta['command']}`", "",
             "Imagined steps/s = batch x steps / seconds of a compiled open-loop rollout of "
             "`predict` (random actions, predictions fed back), compile excluded; random "
             "weights. FLOPs/step: TF profiler on `predict` at batch 1, per sample. Ratio: "
             "best imagined steps/s over the batch sizes / the fastest real-env figure for "
             "that env (table below).", "",
             "| family | hparams | precision | XLA | params | FLOPs/step | "
             + " | ".join(f"B={b}" for b in batches)
             + " | real env (fastest) | real steps/s | ratio imagined/real |",
             "|---|---|---|---|---|---|" + "---|" * len(batches) + "---|---|---|"]
    for row in models:
        cells = []
        for b in batches:
            cell = row["batches"].get(b, {})
            if "sps" in cell:
                note = "" if cell["horizon"] == FLAGS.horizon else f" (H={cell['horizon']})"
                cells.append(f"{_fmt(cell['sps'])}{note}")
            else:
                cells.append("skipped" if cell else "-")
        ref = reference(row, real)
        flops = _si(row["flops_per_step"]) if row["flops_per_step"] else "n/a"
        jit = "/".join("yes" if j else "no" for j in row["jit"]) or "-"
        ratio = (f"{row['best_sps'] / ref['sps']:.3g}" if ref and row["best_sps"] else "-")
        lines.append(
            f"| {row['model']} | {row['hparams']} | {row['precision']} | {jit} | "
            f"{_si(row['params'])} | {flops} | " + " | ".join(cells) + " | "
            + (f"{ref['env']}: {ref['setting']} | {ref['sps']:,.0f}" if ref else "- | -")
            + f" | {ratio} |")
    skipped = [(row, b, c["skipped"]) for row in models for b, c in row["batches"].items()
               if "skipped" in c]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{r['hparams']} B={b} ({why})"
                                              for r, b, why in skipped) + "."]
    short = [(row, b, c["horizon"]) for row in models for b, c in row["batches"].items()
             if "horizon" in c and c["horizon"] != FLAGS.horizon]
    lines += ["", f"H = {FLAGS.horizon} steps per rollout call"
              + (" except where a cell says otherwise (one call of H steps would have outlasted "
                 f"--seconds={FLAGS.seconds:g})." if short else ".")]
    if real:
        lines += ["", "## Real envs (random actions, same machine, same run)", "",
                  "| env | setting | steps/s |", "|---|---|---|"]
        lines += [f"| {r['env']} | {r['setting']} | {r['sps']:,.0f} |" for r in real]
    if claims:
        lines += ["", "## Claims", "", "| claim | imagined | real | imagined steps/s | "
                  "real steps/s | ratio | holds? |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {c['claim']} | {c['model']} | {c['real']} | {_fmt(c['imagined_sps'])} | "
                  f"{c['real_sps']:,.0f} | {c['ratio']:.3g} | {'yes' if c['holds'] else 'NO'} |"
                  for c in claims]
        lines += [""] + [verdict(name, [c for c in claims if c["claim"] == name])
                         for name in dict.fromkeys(c["claim"] for c in claims)]
    return "\n".join(lines)


def verdict(name: str, claims: list[dict]) -> str:
    held = sum(c["holds"] for c in claims)
    if held == len(claims):
        state = "HOLDS in every comparison"
    elif held == 0:
        state = "DOES NOT HOLD in any comparison"
    else:
        state = f"holds in {held} of {len(claims)} comparisons only"
    return f"- Claim \"{name}\": {state} on this machine."


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def _available_memory() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _device() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU only: {cpu_name()}"
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
             for g in gpus]
    return f"GPU: {', '.join(names)}; CPU: {cpu_name()}"


# What PPO actually steps in imagination: the model behind the env contract (auto-reset, limit).
SIMULATED = [("vector", "vector_ensemble", "world_model_vector", CARTPOLE),
             ("grid", "grid_conv", "world_model_grid_fast", BREAKOUT)]


def frame_store(model: WorldModel, frames: int = 4096) -> FrameStore:
    """A store of ``frames`` synthetic frames in one episode (throughput ignores their values)."""
    window = initial_window(model, -(-frames // model.history)).numpy()
    obs = window.reshape(-1, *model.spec.obs_shape)
    final = np.zeros(len(obs), bool)
    final[-1] = True
    return FrameStore.from_chunks([(obs, np.zeros(len(obs), np.int64), final)], model.history)


def measure_simulated(groups: set[str], num_envs: int = 1024) -> list[dict[str, Any]]:
    """Steps/s of ``SimulatedBatchEnv`` (random actions, horizon 50) for the cheap families."""
    rows = []
    for group, name, hparams_set, spec in SIMULATED:
        if group not in groups:
            continue
        model = build_model(name, hparams_set, spec)
        env = SimulatedBatchEnv(model, frame_store(model), num_envs, 50)
        sps = in_graph_sps(env, 50, FLAGS.seconds)
        rows.append({"model": name, "hparams": hparams_set, "num_envs": num_envs, "sps": sps})
        print(f"SimulatedBatchEnv({name}, {hparams_set}), {num_envs} envs: {sps:,.0f} steps/s",
              flush=True)
    return rows


def measure_pipeline() -> list[dict[str, Any]]:
    """The full SimPLe pipeline on pixels: PPO iterations inside each RGB model (model step +
    conv policy on 4 stacked frames + update, ``ppo_simple_atari``: 50-step rollouts, 3 epochs
    of 4 minibatches), one compiled call per iteration, at each ``--pipeline_batch_sizes`` and
    ``--pipeline_precisions``. Imagined frames/s = envs x 50 / seconds of one iteration (the
    compiling first call excluded). FLOPs per imagined frame: the model's ``predict`` (profiled)
    plus the agent's forward pass (profiled policy; the shared torso dominates) times
    1 + 2 + 3 x 3 (rollout; the critic on every observation and every final observation;
    forward and ~2x for the backward pass in each of 3 epochs) -- an estimate."""
    rows = []
    for name, hparams_set in PIPELINE_MODELS:
        if FLAGS.hparams_sets and hparams_set not in FLAGS.hparams_sets:
            continue
        for precision in FLAGS.pipeline_precisions:
            hp = registry.hparams(hparams_set)
            hp.mixed_precision = "" if precision == "float32" else precision
            model = registry.model(name)(PONG, hp)
            model_flops = profiled_flops(model)
            for batch in (int(b) for b in FLAGS.pipeline_batch_sizes):
                if logits_bytes(model, batch) > (FLAGS.max_memory_gb * 2**30
                                                 or _available_memory() / 4):
                    rows.append({"model": name, "hparams": hparams_set, "precision": precision,
                                 "envs": batch, "skipped": "pixel logits over the memory limit"})
                    continue
                ppo_hp = registry.hparams("ppo_simple_atari").parse(
                    f"num_envs={batch},epoch_length=50,iterations_per_call=1")
                sim = SimulatedBatchEnv(model, frame_store(model), batch, 50, model.history)
                agent = PPO(sim, ppo_hp, total_env_steps=batch * 50)
                t0 = time.perf_counter()
                agent.train(1)  # compiles
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                agent.train(1)
                seconds = time.perf_counter() - t0
                policy = tf.function(lambda x, a=agent: a._policy(a.params, a._features(x)))
                graph = policy.get_concrete_function(
                    tf.TensorSpec([1, *sim.observation_spec.shape], tf.uint8)).graph
                options = option_builder.ProfileOptionBuilder.float_operation()
                options["output"] = "none"
                policy_flops = int(model_analyzer.profile(graph, options=options).total_float_ops)
                row = {"model": name, "hparams": hparams_set, "precision": precision,
                       "envs": batch, "compile_s": round(compile_s, 1),
                       "frames_per_s": round(batch * 50 / seconds, 2),
                       "model_flops": model_flops, "policy_flops": policy_flops,
                       "flops_per_frame": model_flops + policy_flops * (1 + 2 + 3 * 3)}
                rows.append(row)
                print(f"pipeline {name}/{hparams_set} {precision} B={batch}: "
                      f"{row['frames_per_s']:,.1f} imagined frames/s", flush=True)
    return rows


def pipeline_report(rows: list[dict[str, Any]], real: list[dict[str, Any]]) -> str:
    ale = max((r["sps"] for r in real if r["env"].startswith("ALE Pong")), default=None)
    lines = ["", "", "## Full pipeline: PPO iterations in imagination on pixels (model step + "
             "conv policy on 4 stacked frames + update)", "",
             f"ALE Pong's own frames/s on this machine (same run, fastest setting): "
             f"{_fmt(ale) if ale else 'not measured'}", "",
             "| model | hparams | precision | envs | compile s | imagined frames/s | "
             "model FLOPs/frame | policy FLOPs/frame | est. FLOPs/frame | vs ALE |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['hparams']} | {r['precision']} | {r['envs']} | "
                         f"skipped: {r['skipped']} | | | | | |")
            continue
        ratio = f"{r['frames_per_s'] / ale:.4f}" if ale else ""
        lines.append(f"| {r['model']} | {r['hparams']} | {r['precision']} | {r['envs']} | "
                     f"{r['compile_s']} | {_fmt(r['frames_per_s'])} | {_si(r['model_flops'])} | "
                     f"{_si(r['policy_flops'])} | {_si(r['flops_per_frame'])} | {ratio} |")
    return "\n".join(lines)


def main(_: list[str]) -> None:
    groups = set(FLAGS.families)
    if not groups <= set(FAMILY_GROUPS):
        raise app.UsageError(f"--families takes {', '.join(FAMILY_GROUPS)}")
    meta = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gymnasium": gym.__version__, "numpy": np.__version__,
            "device": _device(), "cpu": cpu_name(), "command": "python " + " ".join(sys.argv),
            "seconds": FLAGS.seconds, "horizon": FLAGS.horizon,
            "mixed_precision": FLAGS.mixed_precision or "float32"}
    print(f"# {meta['device']}, TF {meta['tensorflow']}", flush=True)
    models = [measure_model(*m) for m in MODELS
              if m[0] in groups and (not FLAGS.hparams_sets or m[2] in FLAGS.hparams_sets)]
    real = [] if FLAGS.skip_real_envs else measure_real_envs(groups)
    simulated = measure_simulated(groups)
    pipeline = measure_pipeline() if "rgb" in groups and FLAGS.pipeline_batch_sizes else []
    claims = check_claims(models, real)
    text = report(meta, models, real, claims)
    if simulated:
        text += ("\n\n## Through SimulatedBatchEnv (what PPO steps: resets from real windows, "
                 "horizon 50)\n\n| model | hparams | envs | steps/s |\n|---|---|---|---|\n")
        text += "\n".join(f"| {r['model']} | {r['hparams']} | {r['num_envs']} | {r['sps']:,.0f} |"
                           for r in simulated)
    if pipeline:
        text += pipeline_report(pipeline, real)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, FLAGS.out_name + ".md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(FLAGS.out_dir, FLAGS.out_name + ".json"), "w") as f:
        json.dump({"meta": meta, "models": models, "real_envs": real, "claims": claims,
                   "simulated_env": simulated, "pipeline": pipeline}, f,
                  indent=1, default=_json_default)
    print("\n" + text)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    app.run(main)
