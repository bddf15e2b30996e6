"""TensorBoard for the run directory: a writer that, on resume, first trims what a killed run
logged after its checkpoint (as ``rundir.keep_jsonl`` trims ``metrics.jsonl``), and
:class:`Summaries`, the batched scalar writes of the training loop. Below every runner in the
chain (loops, world-model trainer, SimPLe loop)."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata


def open_writer(output_dir: str, resume_step: int | None = None) -> tf.summary.SummaryWriter:
    """A summary writer for ``output_dir``; resuming from a checkpoint at ``resume_step`` (0: no
    checkpoint yet), the event files already there lose their events after that step first
    (:func:`trim_events`). A TensorBoard already running keeps showing them until restarted."""
    if resume_step is not None:
        trim_events(output_dir, resume_step)
    return tf.summary.create_file_writer(output_dir)


def trim_events(output_dir: str, last_step: int) -> int:
    """Drops every event with a step after ``last_step`` from the TensorBoard event files in
    ``output_dir``; returns how many went.

    A killed run logged steps past its last checkpoint; the rerun logs them again, and
    TensorBoard would show both (its Rust loader, the default, ignores the ``SessionLog.START``
    purge of the old Python one). A file is rewritten (temp file + rename) only where something
    goes; a last record cut off by the kill goes too.
    """
    dropped = 0
    names = tf.io.gfile.listdir(output_dir) if tf.io.gfile.isdir(output_dir) else []
    for path in [os.path.join(output_dir, n) for n in sorted(names)
                 if n.startswith("events.out.tfevents.")]:
        kept, cut = [], 0
        try:
            for raw in tf.data.TFRecordDataset(path):
                record = raw.numpy()
                if event_pb2.Event.FromString(record).step <= last_step:
                    kept.append(record)
                else:
                    cut += 1
        except tf.errors.DataLossError:
            cut += 1  # a record the kill cut off
        if cut:
            fd, tmp = tempfile.mkstemp(".tmp", ".trim", output_dir)  # no "tfevents": TB skips it
            os.close(fd)
            try:
                with tf.io.TFRecordWriter(tmp) as writer:
                    for record in kept:
                        writer.write(record)
                tf.io.gfile.rename(tmp, path, overwrite=True)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            dropped += cut
    return dropped


_SCALAR = scalar_metadata.create_summary_metadata(display_name=None, description=None)


class Summaries:
    """TensorBoard scalars of ``metrics.jsonl``'s records, written in batches.

    Eager ``tf.summary.scalar`` costs ~0.3 ms per scalar: ~3.5 ms of every ~75 ms CartPole train
    call. Records wait here and go out at most every ``every_s`` seconds (and on ``flush``) in
    one compiled call per batch (~0.25 ms per record). A list value ``[a0, a1, ...]`` is one tag
    per agent (``name/agent_i``); ``None`` (not finite) values are skipped, as is ``env_steps``,
    the step axis.
    """

    def __init__(self, writer: tf.summary.SummaryWriter, every_s: float = 2.0) -> None:
        self.writer, self.every_s = writer, every_s
        self.pending: list[dict[str, Any]] = []
        self.last = time.perf_counter()
        self._write: dict[tuple[str, ...], Callable] = {}

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        if time.perf_counter() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Writes every pending record, in order, and flushes the event file."""
        pending, self.pending = self.pending, []
        runs: list[tuple[tuple[str, ...], list[int], list[list[float]]]] = []
        for record in pending:  # consecutive records with the same tags: one compiled write
            tags, values = [], []
            for name, value in record.items():
                if name == "env_steps":
                    continue
                if isinstance(value, list):
                    tags += [f"{name}/agent_{i}" for i in range(len(value))]
                    values += value
                else:
                    tags.append(name)
                    values.append(value)
            if not runs or runs[-1][0] != tuple(tags):
                runs.append((tuple(tags), [], []))
            runs[-1][1].append(int(record["env_steps"]))
            runs[-1][2].append([math.nan if v is None else float(v) for v in values])
        for tags, steps, rows in runs:
            if tags not in self._write:
                self._write[tags] = self._compile(tags)
            self._write[tags](tf.constant(steps, tf.int64),
                              tf.constant(rows, tf.float32, [len(rows), len(tags)]))
        self.writer.flush()
        self.last = time.perf_counter()

    def _compile(self, tags: tuple[str, ...]) -> Callable:
        meta, writer = _SCALAR.SerializeToString(), self.writer

        @tf.function(autograph=False, input_signature=[
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, len(tags)], tf.float32)])
        def write(steps: tf.Tensor, rows: tf.Tensor) -> None:
            def body(i: tf.Tensor) -> list[tf.Tensor]:
                with writer.as_default(step=steps[i]):
                    done = [tf.cond(tf.math.is_finite(rows[i, j]),
                                    lambda j=j, tag=tag: tf.summary.write(tag, rows[i, j],
                                                                          metadata=meta),
                                    lambda: tf.constant(False))
                            for j, tag in enumerate(tags)]
                with tf.control_dependencies(done):
                    return [i + 1]

            tf.while_loop(lambda i: i < tf.shape(steps)[0], body, [tf.constant(0)])

        return write
