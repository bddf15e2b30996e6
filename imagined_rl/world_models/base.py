"""The world-model contract: (last k observations, action) -> (next observation, reward, done).

Every model family (vector MLP ensemble, grid conv, RGB frames) implements this one interface, so
the generic trainer (``world_models/trainer.py``), the evaluation (``world_models/evaluate.py``)
and imagination (``envs/simulated.py``) never special-case a family.

Training batches are the dicts of :func:`imagined_rl.data.windows`: ``inputs`` ``[B, k, *obs]``
(obs in their stored dtype: float32 vectors, uint8 grids/frames), ``action`` ``[B]`` int32 (or
``[B, *box]`` float32), ``targets`` ``[B, *obs]``, ``reward`` ``[B]`` float32, ``done`` and
``terminated`` ``[B]`` bool.
"""

from __future__ import annotations

import abc
from typing import Any

import tensorflow as tf

from imagined_rl.data import DataSpec
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams


class WorldModel(tf.Module, abc.ABC):
    """A learned environment model.

    ``observation_kinds`` lists the kinds of data it accepts (``"vector"``: float features,
    ``"grid"``: small binary uint8 ``HxWxC`` images, ``"rgb"``: uint8 ``HxWx3`` frames).
    ``history`` (hparam ``history``) is k, the number of input observations.
    ``convolutional``: its training has convolution gradients (which XLA:CPU runs slowly).
    """

    observation_kinds: tuple[str, ...] = ()
    convolutional: bool = False

    def __init__(self, spec: DataSpec, hparams: HParams, name: str | None = None):
        super().__init__(name=name or type(self).__name__)
        kind = observation_kind(spec)
        if kind not in self.observation_kinds:
            raise UserError(
                f"model {type(self).__name__} takes {'/'.join(self.observation_kinds)} "
                f"observations, but the data of problem '{spec.problem}' are {kind} "
                f"(shape {list(spec.obs_shape)}, {spec.obs_dtype}); pick a matching --model")
        self.spec, self.hparams = spec, hparams
        self.history = int(hparams.history)

    @property
    def train_variables(self) -> list[tf.Variable]:
        """Every trainable variable: ``tf.Variable``s held directly *and* those of Keras 3 layers
        (which ``tf.Module.trainable_variables`` does not see), each once."""
        found = list(self.trainable_variables)
        for layer in self._flatten(predicate=lambda x: isinstance(x, tf.keras.layers.Layer)):
            found.extend(layer.trainable_variables)
        unique: dict[int, tf.Variable] = {}
        for v in found:
            unique.setdefault(id(v), v)
        return list(unique.values())

    def adapt(self, dataset: tf.data.Dataset) -> None:
        """Fits data-dependent constants (e.g. normalisation) from a few training batches."""

    @abc.abstractmethod
    def loss(self, batch: dict[str, tf.Tensor], training: bool,
             key: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Scalar training loss and a dict of scalar metrics for one batch."""

    @abc.abstractmethod
    def predict(self, inputs: tf.Tensor, action: tf.Tensor,
                key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One imagined step for a batch: ``(next_obs, reward, done)``.

        ``next_obs`` has the observations' stored shape and dtype (so it can be fed back as an
        input), ``reward`` is float32 ``[B]``, ``done`` bool ``[B]``. Must be traceable inside a
        ``tf.function`` (XLA where the family allows), with stateless randomness from ``key``.
        """


def observation_kind(spec: DataSpec) -> str:
    """``"vector"``, ``"grid"`` or ``"rgb"`` for the observations a data spec describes."""
    if len(spec.obs_shape) == 1:
        return "vector"
    if len(spec.obs_shape) == 3 and spec.obs_encoding == "png" and spec.obs_shape[-1] == 3:
        return "rgb"
    if len(spec.obs_shape) == 3:
        return "grid"
    return f"unsupported shape {list(spec.obs_shape)}"


def model_hparams(hparams: HParams, **defaults: Any) -> HParams:
    """``hparams`` with any of ``defaults`` it lacks added (for hparams shared across families)."""
    hp = hparams.copy()
    for name, value in defaults.items():
        if name not in hp:
            hp.add_hparam(name, value)
    return hp
