"""Trains any registered world model on recorded windows: one loop for every family.

    imagined-rl train --model=vector_ensemble --data_dir=data/cartpole --output_dir=runs/wm

The run directory mirrors the PPO one: ``config.json`` (model, hparams, data dir, seed),
``checkpoints/`` (model, optimiser, step; a rerun resumes), ``metrics.jsonl`` (``step``,
``wall_time_s``, ``loss`` and the model's own metrics, plus ``dev_loss`` on held-out windows),
TensorBoard events and a loss-curve PNG.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl import data, distribute, plots, registry, rundir
from imagined_rl.envs.core import make_key, split
from imagined_rl.errors import UserError
from imagined_rl.summaries import open_writer
from imagined_rl.world_models.base import WorldModel

# The hparams set each model family trains with unless --hparams_set names another.
DEFAULT_HPARAMS = {
    "vector_ensemble": "world_model_vector",
    "grid_conv": "world_model_grid",
    "next_frame_basic_deterministic": "next_frame_basic_deterministic",
    "next_frame_basic_stochastic_discrete": "next_frame_basic_stochastic_discrete",
}


@dataclasses.dataclass
class ModelRunConfig:
    """What identifies a world-model run; stored as ``config.json`` and checked on resume."""

    model: str
    hparams_set: str
    hparams: dict[str, Any]
    data_dir: str
    seed: int

    def __post_init__(self) -> None:
        self.hparams = json.loads(json.dumps(self.hparams))

    @classmethod
    def load(cls, output_dir: str) -> ModelRunConfig:
        raw = rundir.load_config(output_dir, "world-model run")
        if "model" not in raw:
            raise UserError(f"'{output_dir}' holds a PPO run, not a world-model run")
        return cls(**raw)


def build_model(config: ModelRunConfig) -> WorldModel:
    """The (untrained) model a config describes, checked against its data's spec."""
    hp = registry.hparams(config.hparams_set)
    hp.override_from_dict(config.hparams)
    return registry.model(config.model)(data.load_spec(config.data_dir), hp)


class ModelTrainer:
    """Owns a model, its optimiser, step counter and checkpoint manager.

    On one device the train split is held in memory and each compiled call runs the steps up to
    the next log point (``log_every``, 100 by default), drawing every batch in the graph
    (``resident_data``; 1.55-3.15x a ``tf.data`` stream on 2 CPU cores:
    ``bench/world_model_training.py``), step ``s``'s batch a function of the seed and ``s``
    alone, so a resumed run trains exactly as an uninterrupted one.
    Under a ``tf.distribute`` strategy of R replicas, training is data parallel: each replica
    takes ``batch_size / R`` windows of every batch, its gradients (one XLA program) are
    averaged across replicas (then clipped, as one device clips the whole batch's) and applied
    identically to the mirrored variables -- on TPUs all of it inside each replica's one XLA
    program (``step_in_xla``). Not on GPUs: Keras's optimizer writes its step count (a
    variable aggregated ONLY_FIRST_REPLICA) through ``merge_call``, which MirroredStrategy
    cannot run inside XLA, so there the clip and Adam run between programs, as on CPUs.
    """

    def __init__(self, config: ModelRunConfig, output_dir: str,
                 strategy: tf.distribute.Strategy | None = None):
        self.config, self.output_dir = config, output_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        with self.strategy.scope():
            self._make(config, output_dir)
        if self.replicas > 1 and isinstance(self.optimizer,
                                            tf.keras.optimizers.LossScaleOptimizer):
            raise UserError("mixed_float16 does not train under a tf.distribute strategy here "
                            "(its loss scale and clipping act before the all-reduce): use "
                            "mixed_precision=mixed_bfloat16, or --distribute=none")
        if int(self.hp.batch_size) % self.replicas:
            raise UserError(f"batch_size={self.hp.batch_size} does not split over "
                            f"{self.replicas} replicas: use a multiple of {self.replicas}")
        self._dev_batches: list | None = None
        jit = bool(self.hp.get("jit", True))
        self._grads = tf.function(self._grads_graph, jit_compile=jit)
        self._train_step = tf.function(self._train_step_graph, jit_compile=jit)
        self._replicated_step = tf.function(self._replicated_step_graph, autograph=False)
        # TPUs: each replica's whole step (gradients, all-reduce, clip, Adam) is one XLA
        # program; elsewhere only the gradients are (see the class docstring)
        self.step_in_xla = jit and self.replicas > 1 and isinstance(
            self.strategy, tf.distribute.TPUStrategy)
        self._replica_step_xla = tf.function(self._replica_step, jit_compile=True)
        self._eval_step = tf.function(self._eval_step_graph, jit_compile=jit)
        # Many steps in one while loop: XLA:CPU runs convolution gradients inside a loop ~5x
        # slower than TF's kernels (44 vs 7.7 ms a step, grid_conv): there the loop is a graph.
        loop_jit = jit and (distribute.accelerator() or not self.model.convolutional)
        self._resident_steps = tf.function(self._resident_steps_graph, jit_compile=loop_jit,
                                           reduce_retracing=True)
        self._metric_names: list[str] = []

    def _make(self, config: ModelRunConfig, output_dir: str) -> None:
        self.model = build_model(config)
        self.hp = self.model.hparams
        self.clip = float(self.hp.get("clip_grad_norm", 0.0) or 0.0)
        lr = float(self.hp.learning_rate_constant)
        if self.hp.get("mixed_precision", "") == "mixed_float16":
            # float16 gradients underflow: scale the loss up, unscale the gradients (then clip
            # them, inside the optimizer), skip steps whose gradients overflowed (dynamic loss
            # scale). bfloat16 needs none of this.
            self.optimizer = tf.keras.optimizers.LossScaleOptimizer(tf.keras.optimizers.Adam(
                lr, global_clipnorm=self.clip or None))
            self.clip = 0.0
        else:
            self.optimizer = tf.keras.optimizers.Adam(lr)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=3)

    def build(self) -> None:
        """Creates the model's lazily built layers and the optimiser's slots (under the
        strategy, so they are mirrored), from one training batch."""
        batch = next(iter(self.dataset("train", shuffle=False).take(1)))
        with self.strategy.scope():
            self.model.loss(batch, False, make_key(0))
            self.optimizer.build(self.model.train_variables)

    def restore(self) -> bool:
        """Restores the newest checkpoint; ``False`` if there is none (a fresh run)."""
        latest = distribute.common_checkpoint(self.strategy, self.manager)
        if not latest:
            return False
        self.build()
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def dataset(self, split_name: str, shuffle: bool) -> tf.data.Dataset:
        return data.windows(self.config.data_dir, split_name, history=self.model.history,
                            batch_size=int(self.hp.batch_size), shuffle=shuffle,
                            seed=self.config.seed + int(self.step.numpy()),
                            drop_remainder=True)

    def _grads_graph(self, batch: dict[str, tf.Tensor], key: tf.Tensor) -> tuple[dict, list]:
        """The metrics of one batch and the gradients of its (loss-scaled) loss."""
        scaled = isinstance(self.optimizer, tf.keras.optimizers.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            loss, metrics = self.model.loss(batch, True, key)
            objective = self.optimizer.scale_loss(loss) if scaled else loss
        return dict(metrics, loss=loss), tape.gradient(objective, self.model.train_variables)

    def _apply(self, grads: list, clip: bool = True) -> None:
        if clip and self.clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip)
        self.optimizer.apply_gradients(zip(grads, self.model.train_variables))
        self.step.assign_add(1)

    def _train_step_graph(self, batch: dict[str, tf.Tensor], key: tf.Tensor) -> dict:
        metrics, grads = self._grads_graph(batch, key)
        self._apply(grads)
        return metrics

    def _replica_step(self, batch: dict[str, tf.Tensor], key: tf.Tensor) -> dict:
        ctx = tf.distribute.get_replica_context()
        key = tf.random.experimental.stateless_fold_in(key, ctx.replica_id_in_sync_group)
        metrics, grads = self._grads(batch, key)
        if self.clip > 0:  # clip the mean gradient, as one device would
            grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
            grads, _ = tf.clip_by_global_norm(grads, self.clip)
        # Keras sums gradients across replicas inside apply_gradients: hand it 1/R of each
        # (where clipped, the mean is summed again: one all-reduce too many, but exact)
        self._apply([g / self.replicas for g in grads], clip=False)
        return metrics

    def _replicated_step_graph(self, batch: dict[str, tf.Tensor], key: tf.Tensor) -> dict:
        step = self._replica_step_xla if self.step_in_xla else self._replica_step
        metrics = self.strategy.run(step, (batch, key))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in metrics.items()}

    def _resident_steps_graph(self, table: data.WindowTable, key: tf.Tensor, first: tf.Tensor,
                              n: tf.Tensor) -> dict[str, tf.Tensor]:
        """``n`` optimiser steps in one program, each on a batch drawn in the graph from
        ``table``; step ``s``'s batch and model key are functions of ``(key, s)`` alone, so a
        resumed run draws what an uninterrupted one would. Returns the metrics' sums."""
        size, history = int(self.hp.batch_size), self.model.history

        def body(i: tf.Tensor, sums: dict[str, tf.Tensor]) -> tuple:
            data_key, model_key = tf.unstack(split(
                tf.random.experimental.stateless_fold_in(key, first + tf.cast(i, tf.int64))))
            metrics, grads = self._grads_graph(
                data.sample_windows(table, size, history, data_key), model_key)
            self._apply(grads)
            return i + 1, {k: v + tf.cast(metrics[k], tf.float32) for k, v in sums.items()}

        zeros = {name: tf.constant(0.0) for name in self._metric_names}
        return tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), zeros))[1]

    def _eval_step_graph(self, batch: dict[str, tf.Tensor], key: tf.Tensor) -> tf.Tensor:
        loss, _ = self.model.loss(batch, False, key)
        return loss

    def reset_dev_sample(self) -> None:
        """Draws the dev sample anew on the next :meth:`dev_loss` (the data has grown)."""
        self._dev_batches = None

    def dev_loss(self, batches: int = 8) -> float | None:
        """Mean loss on a fixed sample of held-out (dev split) batches; None without dev data.

        The batches are drawn once (shuffled with a fixed seed, so they span many episodes) and
        kept, so every log point is scored on the same windows without rereading the shards.
        """
        if self._dev_batches is None:
            try:
                ds = data.windows(self.config.data_dir, "dev", history=self.model.history,
                                  batch_size=int(self.hp.batch_size), shuffle=True,
                                  seed=self.config.seed, drop_remainder=True)
                self._dev_batches = list(ds.take(batches))
            except UserError:
                self._dev_batches = []
        if not self._dev_batches:
            return None
        keys = tf.unstack(split(make_key(self.config.seed + 1), len(self._dev_batches)))
        losses = [float(self._eval_step(b, k)) for b, k in zip(self._dev_batches, keys)]
        return float(np.mean(losses))

    def _stepper(self) -> Callable[[int, int], dict[str, float]]:
        """``advance(step, n)``: takes ``n`` optimiser steps from ``step``, returns the sums of
        their metrics. On one device the train split is read into memory once
        (``data.resident_windows``) and each call is one compiled program of ``n`` steps that
        samples its own batches: no input pipeline, one host transfer per call. Under a
        strategy (or ``resident_data=False``, for data beyond memory) batches stream from
        ``data.windows``, one call per step, each worker reading its share."""
        key = make_key(self.config.seed)
        fold = lambda step: tf.random.experimental.stateless_fold_in(key, step)
        if self.replicas == 1 and bool(self.hp.get("resident_data", True)):
            table = data.resident_windows(self.config.data_dir, "train",
                                          history=self.model.history)
            if not self._metric_names:  # traced once, not run: the model's metric names
                batch = data.sample_windows(table, int(self.hp.batch_size),
                                            self.model.history, key)
                spec = tf.nest.map_structure(tf.TensorSpec.from_tensor, (batch, key))
                self._metric_names = sorted(
                    self._grads.get_concrete_function(*spec).structured_outputs[0])

            def resident(step: int, n: int) -> dict[str, float]:
                sums = self._resident_steps(table, key, tf.constant(step, tf.int64),
                                            tf.constant(n))
                return {name: float(v) for name, v in sums.items()}

            return resident
        batches = self.dataset("train", shuffle=True).repeat()
        step_fn = self._train_step
        if self.replicas > 1:  # workers split each global batch (not the shard files)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            batches, step_fn = (self.strategy.experimental_distribute_dataset(
                batches.with_options(options)), self._replicated_step)
        batches = iter(batches)

        def streamed(step: int, n: int) -> dict[str, float]:
            sums: dict[str, float] = {}
            for s in range(step, step + n):
                for name, value in step_fn(next(batches), fold(s)).items():
                    sums[name] = sums.get(name, 0.0) + float(value)
            return sums

        return streamed

    def train(self, train_steps: int, log_every: int = 100, save_checkpoints_secs: float = 30.0,
              progress: bool = True) -> dict[str, Any]:
        """Trains until ``train_steps`` optimiser steps (resuming), logging as it goes."""
        out = self.output_dir
        metrics_path = os.path.join(out, "metrics.jsonl")
        done = int(self.step.numpy())
        if done >= train_steps:
            return {}  # already there (a resumed loop): no data to read, nothing to save
        history = rundir.keep_jsonl(metrics_path, lambda h: h["step"] <= done)
        wall0 = history[-1]["wall_time_s"] if history else 0.0
        writer = open_writer(out, done)  # drops what a killed run logged past its checkpoint
        advance = self._stepper()
        bar = tqdm.tqdm(total=train_steps, initial=min(done, train_steps), unit="step",
                        disable=not progress, dynamic_ncols=True, desc=self.config.model)
        start = last_save = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        record: dict[str, Any] = {}
        with open(metrics_path, "a") as mfile:
            while (step := int(self.step.numpy())) < train_steps:
                n = min(log_every - step % log_every, train_steps - step)
                for name, value in advance(step, n).items():
                    sums[name] = sums.get(name, 0.0) + value
                count += n
                step += n
                bar.update(n)
                if step % log_every == 0 or step == train_steps:
                    record = {"step": step,
                              "wall_time_s": round(wall0 + time.perf_counter() - start, 3)}
                    record.update({k: round(v / count, 6) for k, v in sums.items()})
                    if not np.isfinite(record["loss"]):
                        raise UserError(f"world-model training diverged: loss is {record['loss']} "
                                        f"at step {step}; lower the learning rate")
                    dev = self.dev_loss()
                    if dev is not None:
                        record["dev_loss"] = round(dev, 6)
                    sums, count = {}, 0
                    mfile.write(json.dumps(record) + "\n")
                    mfile.flush()
                    with writer.as_default(step=step):
                        for name, value in record.items():
                            if name != "step":
                                tf.summary.scalar(name, value)
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                if distribute.agree(self.strategy, time.perf_counter() - last_save >=
                                    save_checkpoints_secs):
                    self.manager.save(checkpoint_number=step)
                    last_save = time.perf_counter()
        bar.close()
        self.manager.save(checkpoint_number=int(self.step.numpy()))
        writer.flush()
        _plot_losses(metrics_path, os.path.join(out, "loss_curve.png"), self.config.model)
        return record


def train_world_model(config: ModelRunConfig, output_dir: str, train_steps: int | None = None,
                      save_checkpoints_secs: float = 30.0, progress: bool = True,
                      log=print, strategy: tf.distribute.Strategy | None = None) -> ModelTrainer:
    """Trains (or resumes) the world model of ``config`` in ``output_dir``."""
    trainer = open_run(config, output_dir, log, strategy)
    steps = int(train_steps or trainer.hp.train_steps)
    trainer.train(steps, save_checkpoints_secs=save_checkpoints_secs, progress=progress)
    return trainer


def open_run(config: ModelRunConfig, output_dir: str, log=print,
             strategy: tf.distribute.Strategy | None = None) -> ModelTrainer:
    """The trainer of the world-model run in ``output_dir``: claimed for ``config`` (a rerun
    must ask for the same), restored from its newest checkpoint, or fresh and fitted to its
    data's base rates (``adapt``). Train it with :meth:`ModelTrainer.train`, as often as
    wanted: the SimPLe loop keeps one trainer, so the model it imagines with is one object."""
    if rundir.read_config(output_dir) is not None:
        ModelRunConfig.load(output_dir)  # a PPO run here is refused by name
    rundir.claim(output_dir, dataclasses.asdict(config), "a world-model run")
    trainer = ModelTrainer(config, output_dir, strategy)
    if trainer.restore():
        log(f"resuming {output_dir} from step {int(trainer.step.numpy())}")
    else:
        trainer.build()
        trainer.model.adapt(trainer.dataset("train", shuffle=True).take(50))
    return trainer


def restore_model(output_dir: str) -> tuple[WorldModel, ModelRunConfig]:
    """The trained world model of a run directory, at its newest checkpoint."""
    config = ModelRunConfig.load(output_dir)
    trainer = ModelTrainer(config, output_dir)
    if not trainer.restore():
        raise UserError(f"no checkpoint in '{output_dir}/checkpoints'; train the model first")
    return trainer.model, config


def _plot_losses(metrics_path: str, png_path: str, title: str) -> None:
    rows = rundir.read_jsonl(metrics_path)
    series = {name: ([r["step"] for r in rows if name in r], [r[name] for r in rows if name in r])
              for name in ("loss", "dev_loss")}
    plots.curves(png_path, series, "optimiser step", "loss", f"world model {title}", log_y=True)
