"""Picking the ``tf.distribute`` strategy for the machine a run is on, and saying which.

``pick`` tries, in order: a TPU (named with ``tpu=``, or found on a TPU VM / Colab TPU
runtime), several workers (``TF_CONFIG``, or a Slurm step of several tasks), several GPUs, and
otherwise the default strategy (one device). It returns the strategy with a one-line
description for the log. A TPU that was asked for by name and cannot be reached is a one-line
``UserError``; one that was only guessed at falls back, and the description says why.

PPO (``ppo.PPO(..., strategy=)``) and world-model training (``ModelTrainer(..., strategy=)``)
run data parallel under the strategy; ``worker_dir`` says where each worker writes.
"""

from __future__ import annotations

import glob
import os

import tensorflow as tf

from imagined_rl.errors import UserError

TPU_ENV_VARS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE")


def accelerator() -> bool:
    """Whether TensorFlow sees a GPU or TPU (XLA compiles convolution gradients well there;
    on CPU, TF's own kernels are several times faster: bench/README)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def collectives_in_xla(strategy: tf.distribute.Strategy) -> bool:
    """Whether an all-reduce can sit inside each replica's XLA program: on TPUs, and under
    ``MirroredStrategy`` when every device is a GPU (TF then emits an all-reduce as a collective
    XLA compiles, not through ``merge_call``; writes to variables aggregated other than NONE
    still go through ``merge_call`` and cannot sit inside XLA there). XLA:CPU cannot hold
    collectives, nor can multi-worker strategies here."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if type(strategy) is not tf.distribute.MirroredStrategy:
        return False
    return all("GPU" in d.upper() for d in strategy.extended.worker_devices)


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
    # Without GPUs the Slurm resolver would ask nvidia-smi: give it numbers (enough "GPUs" for
    # every task of the step on one node), keep its cluster.
    tasks = int(os.environ["SLURM_STEP_NUM_TASKS"])
    slurm = resolvers.SlurmClusterResolver(gpus_per_node=tasks, gpus_per_task=1,
                                           auto_set_gpu=False)
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


def worker_dir(strategy: tf.distribute.Strategy, output_dir: str) -> str:
    """Where this process writes its run: ``output_dir`` on the chief (the ``chief`` task, else
    worker 0, or a single machine), ``<output_dir>/workers/<task>-<i>`` on the other workers.

    Every worker trains the same mirrored variables and checkpoints its own copy (so each one
    can resume after a kill), but only the chief's metrics, plots and evaluation are the run's.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return output_dir
    task_id = int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0):
        return output_dir
    return os.path.join(output_dir, "workers", f"{task_type}-{task_id}")


def _across_workers(strategy: tf.distribute.Strategy | None, value: float) -> list[float]:
    """``value`` from every replica of every worker (``[value]`` without several workers)."""
    if not getattr(getattr(strategy, "cluster_resolver", None), "task_type", None):
        return [value]
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([value], tf.float32))
    return strategy.gather(per_replica, axis=0).numpy().tolist()


def agree(strategy: tf.distribute.Strategy | None, flag: bool) -> bool:
    """Whether any worker's ``flag`` is set. A decision each worker takes from its own clock
    (checkpoint now?) is then taken by all at the same step, so they save the same states and
    their collective calls stay in step."""
    return max(_across_workers(strategy, float(flag))) > 0


def common_checkpoint(strategy: tf.distribute.Strategy | None,
                      manager: tf.train.CheckpointManager) -> str | None:
    """The newest checkpoint (numbered by step) that every worker has: each keeps its own copy,
    and a kill can land between two workers' saves. ``None`` on a fresh run; a one-line
    :class:`UserError` when some workers have checkpoints and others none (a worker's directory
    lost: restarting all from scratch would silently drop the others' progress)."""
    numbers = {int(p.rsplit("-", 1)[-1]): p for p in manager.checkpoints}
    everyone = _across_workers(strategy, float(max(numbers, default=-1)))
    newest = min(everyone)
    if newest < 0 and max(everyone) >= 0:
        raise UserError(f"some workers have checkpoints (up to step {int(max(everyone))}) and "
                        "others none: restore the missing workers/ directories or restart the "
                        "run in a fresh --output_dir")
    if newest < 0:
        return None
    if int(newest) not in numbers:
        raise UserError(f"the workers' checkpoints have no step in common (this one has "
                        f"{sorted(numbers)}, another stops at {int(newest)}): restart the run")
    return numbers[int(newest)]
