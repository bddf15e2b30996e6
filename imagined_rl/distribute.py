"""Picking the ``tf.distribute`` strategy for the machine a run is on, and saying which.

``pick`` tries, in order: a TPU (named with ``tpu=``, or found on a TPU VM / Colab TPU
runtime), several workers (``TF_CONFIG``, or a Slurm step of several tasks), several GPUs, and
otherwise the default strategy (one device). It returns the strategy with a one-line
description for the log. A TPU that was asked for by name and cannot be reached is a one-line
``UserError``; one that was only guessed at falls back, and the description says why.

Today the training loops run on one device; running PPO and world-model training under the
picked strategy is the open part of the distribute issue.
"""

from __future__ import annotations

import glob
import os

import tensorflow as tf

from imagined_rl.errors import UserError

TPU_ENV_VARS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE")


def _tpu_here() -> bool:
    """A TPU runtime is likely attached: its env vars, or a TPU VM's accelerator devices."""
    return any(os.environ.get(v) for v in TPU_ENV_VARS) or bool(glob.glob("/dev/accel*"))


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _tpu(tpu: str) -> tuple[tf.distribute.Strategy, str]:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    return strategy, f"TPU {tpu} ({strategy.num_replicas_in_sync} cores)"


def _slurm() -> tf.distribute.cluster_resolver.ClusterResolver | None:
    """The cluster of a Slurm step with more than one task (``srun``), else None."""
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) < 2:
        return None
    resolvers = tf.distribute.cluster_resolver
    gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return resolvers.SlurmClusterResolver(gpus_per_node=gpus, gpus_per_task=1)
    # Without GPUs the Slurm resolver would ask nvidia-smi: give it numbers, keep its cluster.
    slurm = resolvers.SlurmClusterResolver(gpus_per_node=1, gpus_per_task=1, auto_set_gpu=False)
    return resolvers.SimpleClusterResolver(
        slurm.cluster_spec(), task_type=slurm.task_type, task_id=slurm.task_id,
        rpc_layer=slurm.rpc_layer, num_accelerators={})


def pick(mode: str = "auto", tpu: str | None = None) -> tuple[tf.distribute.Strategy, str]:
    """The strategy for ``mode`` ``"auto"`` (see the module docstring) or ``"none"`` (the
    default strategy), and what it is, in words."""
    if mode not in ("auto", "none"):
        raise UserError(f"--distribute={mode!r}: use auto or none")
    if mode == "none":
        return tf.distribute.get_strategy(), "default strategy (one device; --distribute=none)"
    note = ""
    if tpu or _tpu_here():
        try:
            return _tpu(tpu or "local")
        except Exception as e:  # the resolver and TPU initialisation raise several kinds
            if tpu:
                raise UserError(f"TPU {tpu!r} cannot be used: {_first_line(e)}") from None
            note = f" (no usable TPU: {_first_line(e)})"
    if os.environ.get("TF_CONFIG"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, f"multi-worker from TF_CONFIG ({strategy.num_replicas_in_sync} replicas)"
    slurm = _slurm()
    if slurm is not None:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=slurm)
        tasks = os.environ["SLURM_STEP_NUM_TASKS"]
        return strategy, f"multi-worker from Slurm ({tasks} tasks){note}"
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        return strategy, f"mirrored over {len(gpus)} GPUs{note}"
    device = "1 GPU" if gpus else "CPU"
    return tf.distribute.get_strategy(), f"default strategy ({device}){note}"
