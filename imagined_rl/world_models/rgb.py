"""SimPLe's world models for RGB frames: a conv next-frame predictor, deterministic or with a
discrete latent (tensor2tensor's ``next_frame_basic_deterministic`` and
``next_frame_basic_stochastic_discrete``, Kaiser et al. 2019), rewritten for TF 2 / Keras 3.

Network (:class:`BasicDeterministic`)
    The ``history`` uint8 input frames are scaled to [0, 1] and stacked along channels
    (``k * 3``), embedded by a 1x1 convolution to ``hidden_size`` and given a 2-D sinusoidal
    position signal (t2t's ``add_timing_signal_nd``: a translation-equivariant conv net must
    still know where the score and the walls are). ``num_compress_steps`` stride-2 4x4
    convolutions (+ layer norm) halve the resolution, the first ``filter_double_steps`` of them
    doubling the filters; ``num_hidden_layers`` 3x3 convolutions (residual after the first) work
    at the bottleneck; as many stride-2 transposed convolutions come back up, each added to the
    activation of the same scale on the way down (U-Net skip connections) and layer-normed. The
    action (one-hot) is injected after every down-step, at the bottleneck and before every
    up-step: ``x * sigmoid(W a) + V a`` (t2t's ``multi_additive``; ``multiplicative`` and
    ``additive`` are the other ``action_injection`` choices). Checked against t2t's
    ``basic_deterministic.next_frame`` and ``common_video.inject_additional_input``, we
    deliberately differ in two ways: t2t injects only at the bottleneck and before each
    up-step -- we also inject after every down-step, so the encoder's features can depend on
    the action at every scale (cheap: one dense layer per scale); and t2t embeds the action
    with ``symbol_bottom`` (a learned vector scaled by sqrt(hidden_size), which is *zero* for
    action 0), while we feed the one-hot to each injection's dense layers, so every action,
    NOOP included, gets its own learned vector. A 1x1 projection gives, for every
    pixel and colour channel, 256 logits (``[B, H, W, 3, 256]``): a per-sub-pixel softmax, whose
    cross-entropy is clipped as in t2t's ``padded_cross_entropy``: ``relu(xent - cutoff)`` with
    ``cutoff = video_modality_loss_cutoff``, so sub-pixels already predicted with probability
    above ``exp(-cutoff)`` stop pulling on the weights and the capacity goes to the moving
    objects. Reward (3 classes: clipped rewards -1/0/1) and termination (trained on
    ``terminated``) heads read the bottleneck and the final features, each mean-pooled over space.

Frame sizes
    Atari's 105x80 is not a multiple of 2^k: before every stride-2 convolution an odd height or
    width is padded by one row/column (t2t's ``make_even_size``), and every transposed
    convolution's output is cropped back to the size of the skip connection it joins, so any
    ``H x W x 3`` works and the output is exactly ``H x W``. Padding per step instead of once to
    a multiple of 2^k keeps 105x80 at 106x80 (not 128x128) at full resolution.

Discrete latent (:class:`BasicStochasticDiscrete`)
    A posterior tower sees the input frames *and* the target frame (plus the action): 1x1 embed,
    two strided 8x8 convolutions each mean- and max-pooled, a dense layer to ``bottleneck_bits``
    logits. Training adds Gaussian noise (std 0.2) to them, squashes with tanh and discretises
    to +-1 with a straight-through gradient, flips each bit with probability
    ``bottleneck_noise`` (t2t's bit noise) and, per bit, keeps the continuous tanh value instead
    of the hard bit with a probability that falls linearly to 0 over ``discretize_warmup_steps``
    (t2t's ``mix``). The bits enter at the bottleneck as ``x * sigmoid(W z) + V z``
    (``complex_addn``). A prior predicts the bits without the target, so that imagination can
    sample them: an LSTM (``latent_predictor_state_size``) whose state starts from the pooled
    bottleneck features emits the bits 8 at a time as a 256-way softmax, trained with teacher
    forcing to match the posterior's noise-free bits (cross-entropy, added to the loss).
    Following t2t, during training (i) each bit is replaced by a prior-sampled one with a
    probability rising linearly to ``latent_rnn_max_sampling`` over ``latent_rnn_warmup_steps``,
    and (ii) an example sees the latent at all with a probability rising from 0.01 to
    ``latent_use_max_probability`` over the first half of those steps: early on the model must
    explain the frame from frames and action alone, so it learns the action's effect instead of
    reading everything off the target-informed latent. Evaluation (``loss(training=False)``)
    and ``predict`` use prior-sampled bits (temperature ``latent_predictor_temperature``).

Schedules
    Every ramp reads ``self.train_step_counter`` (int64), which ``loss(..., training=True)``
    increments once per call; it is checkpointed with the model.

Scheduled sampling
    SimPLe predicted several frames per example and fed its own predictions back as inputs.
    Our windows hold one next frame, so the same idea is applied to the last input frame: with
    ``scheduled_sampling_prob > 0`` a first pass predicts ``o_t`` from the window one step
    earlier -- ``o_{t-k+1}`` repeated, ``o_{t-k+1} .. o_{t-1}``, since ``o_{t-k}`` is not in the
    batch -- and an "unknown" action (an extra one-hot slot, since ``a_{t-1}`` is not in the batch
    either); its argmax frame replaces the real ``o_t`` for each example with probability
    ``scheduled_sampling_prob * inverse_exp(warmup / 4) * inverse_lin(warmup)`` (t2t's
    ``prob_inverse_lin`` schedule, ``warmup = scheduled_sampling_warmup_steps``), and the
    second pass predicts ``o_{t+1}`` from the mixed window. The first pass is trained as well
    (its clipped frame loss is added, like t2t's loss on predicted input frames), so its
    predictions improve with the model; no gradient flows through its argmax. It doubles the
    cost of a training step.

Mixed precision
    ``mixed_precision`` ("", "mixed_bfloat16", "mixed_float16") is the Keras dtype policy of the
    convolutions, norms and injections (float32 variables, low-precision compute); the pixel
    logits, reward/termination heads, the prior LSTM and every loss stay float32. With
    "mixed_float16" the trainer should scale the loss (bfloat16 needs no scaling).

Randomness is stateless (from the ``key`` arguments), so ``predict`` and ``loss`` trace into
XLA-compiled ``tf.function`` s.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import numpy as np
import tensorflow as tf

from imagined_rl.data import DataSpec
from imagined_rl.errors import UserError
from imagined_rl.hparams import world_models_rgb as rgb_sets
from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_model
from imagined_rl.world_models.base import WorldModel, model_hparams

keras = tf.keras
PIXEL_VALUES = 256
REWARD_CLASSES = 3  # clipped rewards -1, 0, 1
BITS_AT_ONCE = 8  # the prior emits the latent one byte (a 256-way softmax) at a time
MIXED_PRECISION = ("", "mixed_bfloat16", "mixed_float16")
ACTION_INJECTIONS = ("multi_additive", "multiplicative", "additive")
_HEAD_UNITS = 128
_POSTERIOR_NOISE_STD = 0.2  # t2t: truncated normal noise on the posterior logits in training


# ----------------------------------------------------------------------------------------------
# Small helpers.


def _belu(x: tf.Tensor) -> tf.Tensor:
    """t2t's ``belu``: ELU on half the channels, its mirror image ``-elu(-x)`` on the other."""
    x1, x2 = tf.split(x, 2, axis=-1)
    return tf.concat([tf.nn.elu(x1), -tf.nn.elu(-x2)], axis=-1)


_ACTIVATIONS = {"relu": tf.nn.relu, "belu": _belu}


@functools.lru_cache(maxsize=64)
def _timing_signal(height: int, width: int, channels: int) -> np.ndarray:
    """A fixed 2-D sinusoidal position code ``[1, H, W, C]``: the first ``2n`` channels encode
    the row, the next ``2n`` the column (``n = C // 4`` timescales from 1 to 10^4), the rest 0."""
    n = channels // 4
    signal = np.zeros([height, width, channels], np.float32)
    if n == 0:
        return signal[None]
    inv = np.exp(-np.arange(n) * math.log(1e4) / max(n - 1, 1))
    for dim, size in enumerate((height, width)):
        angles = np.arange(size)[:, None] * inv[None, :]  # [size, n]
        code = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # [size, 2n]
        block = slice(2 * n * dim, 2 * n * (dim + 1))
        if dim == 0:
            signal[:, :, block] = code[:, None, :]
        else:
            signal[:, :, block] = code[None, :, :]
    return signal[None]


def _add_timing(x: tf.Tensor) -> tf.Tensor:
    _, h, w, c = x.shape
    return x + tf.constant(_timing_signal(int(h), int(w), int(c)), dtype=x.dtype)


def _pad_even(x: tf.Tensor) -> tf.Tensor:
    """Pads an odd height or width by one row/column of zeros (bottom/right)."""
    _, h, w, _ = x.shape
    if h % 2 == 0 and w % 2 == 0:
        return x
    return tf.pad(x, [[0, 0], [0, h % 2], [0, w % 2], [0, 0]])


def _fold(key: tf.Tensor, i: int) -> tf.Tensor:
    """A key derived from ``key`` for purpose ``i`` (stateless, XLA-compatible)."""
    return tf.random.experimental.stateless_fold_in(key, i)


def _dropout(x: tf.Tensor, rate: float, training: bool, key: tf.Tensor) -> tf.Tensor:
    """Inverted dropout from a stateless key (Keras' ``Dropout`` keeps its own RNG state)."""
    if not training or rate <= 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), key) >= rate
    return tf.where(keep, x / tf.cast(1.0 - rate, x.dtype), tf.zeros_like(x))


def inverse_lin(step: tf.Tensor, max_step: float, min_value: float = 0.01) -> tf.Tensor:
    """Rises linearly from ``min_value`` at step 0 to 1 at ``max_step`` (t2t's
    ``inverse_lin_decay``); float32."""
    progress = tf.minimum(tf.cast(step, tf.float32) / max(float(max_step), 1.0), 1.0)
    return progress * (1.0 - min_value) + min_value


def inverse_exp(step: tf.Tensor, max_step: float, min_value: float = 0.01) -> tf.Tensor:
    """Rises exponentially from ``min_value`` at step 0 to 1 at ``max_step`` (t2t's
    ``inverse_exp_decay``); float32."""
    max_step = max(float(max_step), 1.0)
    base = math.exp(math.log(min_value) / max_step)
    return tf.pow(base, tf.maximum(max_step - tf.cast(step, tf.float32), 0.0))


def bits_to_ints(bits: tf.Tensor) -> tf.Tensor:
    """+-1 bits ``[B, G * 8]`` -> int32 bytes ``[B, G]`` (bit ``j`` of a byte weighs ``2^j``)."""
    ones = tf.cast(tf.reshape(bits, [-1, bits.shape[-1] // BITS_AT_ONCE, BITS_AT_ONCE]) > 0,
                   tf.int32)
    return tf.reduce_sum(ones * (2 ** tf.range(BITS_AT_ONCE)), axis=-1)


def ints_to_bits(ints: tf.Tensor) -> tf.Tensor:
    """int32 bytes ``[B, G]`` -> float32 +-1 bits ``[B, G * 8]`` (inverse of ``bits_to_ints``)."""
    ones = tf.bitwise.bitwise_and(ints[..., None] // (2 ** tf.range(BITS_AT_ONCE)), 1)
    return tf.reshape(2.0 * tf.cast(ones, tf.float32) - 1.0, [-1, ints.shape[-1] * BITS_AT_ONCE])


def _gumbel_argmax(logits: tf.Tensor, temperature: float, key: tf.Tensor) -> tf.Tensor:
    """A sample from ``softmax(logits / temperature)`` over the last axis (argmax at 0), int32."""
    if temperature <= 0.0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    u = tf.random.stateless_uniform(tf.shape(logits), key, minval=1e-9, maxval=1.0)
    return tf.argmax(logits / temperature - tf.math.log(-tf.math.log(u)), axis=-1,
                     output_type=tf.int32)


@dataclasses.dataclass
class ForwardOutput:
    """What one pass of the network gives: float32 pixel logits ``[B, H, W, 3, 256]``, reward
    logits ``[B, 3]``, termination logit ``[B]``, an extra loss (the latent prior's) and the
    latent's scalar metrics."""

    logits: tf.Tensor
    reward_logits: tf.Tensor
    done_logit: tf.Tensor
    extra_loss: tf.Tensor | float = 0.0
    metrics: dict[str, tf.Tensor] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# The deterministic model.


@register_model("next_frame_basic_deterministic")
class BasicDeterministic(WorldModel):
    """SimPLe's deterministic next-frame model: a conv U-Net with a per-pixel 256-way softmax.

    Hparams (missing ones take the values of the ``next_frame_basic_deterministic`` set; see
    ``hparams/world_models_rgb.py``): ``history``, ``hidden_size``, ``num_compress_steps``,
    ``filter_double_steps``, ``num_hidden_layers``, ``dropout``, ``residual_dropout``,
    ``activation_fn``, ``action_injection``, ``video_modality_loss_cutoff``,
    ``video_modality_input_noise``, ``reward_loss_coef``, ``done_loss_coef``, ``sample_frames``,
    ``pixel_sampling_temperature``, ``scheduled_sampling_prob``,
    ``scheduled_sampling_warmup_steps``, ``mixed_precision``, ``adapt_batches``, ``seed``.
    """

    observation_kinds = ("rgb",)
    convolutional = True
    _default_set = staticmethod(rgb_sets.next_frame_basic_deterministic)

    def __init__(self, spec: DataSpec, hparams: HParams, name: str | None = None):
        defaults = dict(self._default_set().values(), adapt_batches=20, seed=0)
        super().__init__(spec, model_hparams(hparams, **defaults), name=name)
        hp = self.hparams
        if not spec.discrete:
            raise UserError(
                f"model {type(self).__name__} needs discrete actions, but problem "
                f"'{spec.problem}' has a Box action space; pick another --model")
        self.height, self.width, self.channels = (int(d) for d in spec.obs_shape)
        self.num_actions = int(spec.action["n"])
        self._check_hparams(hp)
        self.policy = hp.mixed_precision or "float32"
        self.activation = _ACTIVATIONS[hp.activation_fn]
        self._seeds = itertools.count(int(hp.seed) * 1000)
        self.train_step_counter = tf.Variable(0, dtype=tf.int64, trainable=False,
                                              name="train_step_counter")
        self._build_layers()
        self._build_variables()

    # -- construction -----------------------------------------------------------------------

    def _check_hparams(self, hp: HParams) -> None:
        """One-line :class:`UserError` for values the network cannot be built with."""
        n = int(hp.num_compress_steps)
        problems = []
        if n < 1:
            problems.append(f"num_compress_steps must be >= 1, got {n}")
        if not 0 <= int(hp.filter_double_steps) <= n:
            problems.append(f"filter_double_steps must be in [0, num_compress_steps={n}], "
                            f"got {hp.filter_double_steps}")
        if int(hp.hidden_size) < 4:
            problems.append(f"hidden_size must be >= 4, got {hp.hidden_size}")
        if hp.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}, "
                            f"got {hp.mixed_precision!r}")
        if hp.action_injection not in ACTION_INJECTIONS:
            problems.append(f"action_injection must be one of {ACTION_INJECTIONS}, "
                            f"got {hp.action_injection!r}")
        if hp.activation_fn not in _ACTIVATIONS:
            problems.append(f"activation_fn must be one of {tuple(_ACTIVATIONS)}, "
                            f"got {hp.activation_fn!r}")
        if not 0.0 <= float(hp.scheduled_sampling_prob) <= 1.0:
            problems.append(f"scheduled_sampling_prob must be in [0, 1], "
                            f"got {hp.scheduled_sampling_prob}")
        if problems:
            raise UserError(f"{type(self).__name__}: " + "; ".join(problems))

    def _init(self) -> dict[str, Any]:
        """Seeded initialisers for the next layer, so that a model is a function of ``seed``."""
        seed = next(self._seeds)
        return {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed)}

    def _conv(self, filters: int, size: int, strides: int = 1, transpose: bool = False,
              activation: Any = None, **kwargs: Any) -> keras.layers.Layer:
        cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
        return cls(filters, size, strides=strides, padding="same", activation=activation,
                   dtype=self.policy, **self._init(), **kwargs)

    def _dense(self, units: int, dtype: str | None = None, **kwargs: Any) -> keras.layers.Layer:
        return keras.layers.Dense(units, dtype=dtype or self.policy, **self._init(), **kwargs)

    def _injection(self, filters: int) -> keras.layers.Layer:
        """The dense map one-hot action -> per-channel (scale, shift) or one of them."""
        units = 2 * filters if self.hparams.action_injection == "multi_additive" else filters
        return self._dense(units)

    def _build_layers(self) -> None:
        hp = self.hparams
        n, filters = int(hp.num_compress_steps), int(hp.hidden_size)
        act = self.activation
        self.inputs_embed = self._conv(
            filters, 1, bias_initializer=keras.initializers.RandomNormal(
                stddev=0.01, seed=next(self._seeds)))
        self.down_convs, self.down_norms, self.down_inject = [], [], []
        for i in range(n):
            if i < int(hp.filter_double_steps):
                filters *= 2
            self.down_convs.append(self._conv(filters, 4, strides=2, activation=act))
            self.down_norms.append(keras.layers.LayerNormalization(dtype=self.policy))
            self.down_inject.append(self._injection(filters))
        self.bottleneck_filters = filters
        self.middle_inject = self._injection(filters)
        self.middle_convs = [self._conv(filters, 3, activation=act)
                             for _ in range(int(hp.num_hidden_layers))]
        self.middle_norms = [keras.layers.LayerNormalization(dtype=self.policy)
                             for _ in range(max(int(hp.num_hidden_layers) - 1, 0))]
        self.up_convs, self.up_norms, self.up_inject = [], [], []
        for i in range(n):
            self.up_inject.append(self._injection(filters))
            if i >= n - int(hp.filter_double_steps):
                filters //= 2
            self.up_convs.append(self._conv(filters, 4, strides=2, transpose=True,
                                            activation=act))
            self.up_norms.append(keras.layers.LayerNormalization(dtype=self.policy))
        self.pixel_logits = self._dense(self.channels * PIXEL_VALUES, dtype="float32")
        self.head_hidden = self._dense(_HEAD_UNITS, activation="relu")
        self.reward_head = self._dense(REWARD_CLASSES, dtype="float32")
        self.done_head = self._dense(1, dtype="float32")

    def _build_variables(self) -> None:
        """Creates every variable now (one evaluation pass on a zero batch), so that
        ``train_variables`` is complete before the trainer first traces a step."""
        k = self.history
        batch = {
            "inputs": tf.zeros([1, k, self.height, self.width, self.channels], tf.uint8),
            "action": tf.zeros([1], tf.int32),
            "targets": tf.zeros([1, self.height, self.width, self.channels], tf.uint8),
            "reward": tf.zeros([1]),
            "terminated": tf.zeros([1], tf.bool),
        }
        self.loss(batch, False, tf.zeros([2], tf.int32))

    # -- the network ------------------------------------------------------------------------

    def action_features(self, action: tf.Tensor) -> tf.Tensor:
        """One-hot ``[B, num_actions + 1]``; index ``num_actions`` is the "unknown" action of
        the scheduled-sampling pass."""
        return tf.one_hot(tf.cast(action, tf.int32), self.num_actions + 1, dtype=tf.float32)

    def _inject(self, layer: keras.layers.Layer, x: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
        """Conditions ``x`` on the one-hot action (t2t's ``inject_additional_input``)."""
        a = layer(action)[:, None, None, :]
        mode = self.hparams.action_injection
        if mode == "multi_additive":
            mul, add = tf.split(a, 2, axis=-1)
            return x * tf.sigmoid(mul) + add
        if mode == "multiplicative":
            return x * a
        return x + a

    def _frames(self, frames: tf.Tensor, training: bool, key: tf.Tensor) -> tf.Tensor:
        """uint8 ``[B, k, H, W, 3]`` -> float32 ``[B, H, W, 3k]`` in [0, 1]; in training each
        pixel is replaced by the background colour with probability
        ``video_modality_input_noise`` (t2t's pixel-noise bottom)."""
        x = tf.cast(frames, tf.float32) / 255.0
        noise = float(self.hparams.video_modality_input_noise)
        if training and noise > 0.0:
            # Background = per-channel median of the batch's newest input frames.
            last = tf.reshape(x[:, -1], [-1, self.channels])
            background = tf.sort(last, axis=0)[tf.shape(last)[0] // 2]
            hit = tf.random.stateless_uniform(tf.shape(x)[:-1], key)[..., None] < noise
            x = tf.where(hit, background, x)
        x = tf.transpose(x, [0, 2, 3, 1, 4])
        return tf.reshape(x, [-1, self.height, self.width, frames.shape[1] * self.channels])

    def _encode(self, frames: tf.Tensor, action: tf.Tensor, training: bool,
                key: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Input frames -> (bottleneck activation, skip activations from fine to coarse)."""
        hp = self.hparams
        x = _add_timing(self.inputs_embed(self._frames(frames, training, _fold(key, 0))))
        skips = []
        for i, (conv, norm, inject) in enumerate(
                zip(self.down_convs, self.down_norms, self.down_inject)):
            skips.append(x)
            x = _dropout(x, float(hp.dropout), training, _fold(key, 10 + i))
            x = norm(conv(_add_timing(_pad_even(x))))
            x = self._inject(inject, x, action)
        return self._inject(self.middle_inject, x, action), skips

    def _decode(self, x: tf.Tensor, skips: list[tf.Tensor], action: tf.Tensor, training: bool,
                key: tf.Tensor) -> ForwardOutput:
        """Bottleneck (latent already injected) -> pixel logits and reward/termination logits."""
        hp = self.hparams
        x_mid = tf.reduce_mean(x, axis=[1, 2])
        for i, conv in enumerate(self.middle_convs):
            y = conv(_dropout(x, float(hp.residual_dropout), training, _fold(key, 100 + i)))
            x = y if i == 0 else self.middle_norms[i - 1](x + y)
        for i, (conv, norm, inject) in enumerate(
                zip(self.up_convs, self.up_norms, self.up_inject)):
            x = _dropout(x, float(hp.dropout), training, _fold(key, 200 + i))
            x = conv(self._inject(inject, x, action))
            skip = skips[-1 - i]
            x = _add_timing(norm(x[:, : skip.shape[1], : skip.shape[2]] + skip))
        logits = self.pixel_logits(x)
        logits = tf.reshape(logits, [-1, self.height, self.width, self.channels, PIXEL_VALUES])
        pooled = tf.concat([x_mid, tf.reduce_mean(x, axis=[1, 2])], axis=-1)
        hidden = self.head_hidden(pooled)
        return ForwardOutput(logits, self.reward_head(hidden), self.done_head(hidden)[:, 0])

    def inject_latent(self, x: tf.Tensor, frames: tf.Tensor, target: tf.Tensor | None,
                      action: tf.Tensor, training: bool,
                      key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | float, dict]:
        """Deterministic model: no latent (``(x, 0.0, {})``); the stochastic one overrides."""
        del frames, target, action, training, key
        return x, 0.0, {}

    def forward(self, frames: tf.Tensor, action: tf.Tensor, target: tf.Tensor | None,
                training: bool, key: tf.Tensor) -> ForwardOutput:
        """One pass: uint8 frames ``[B, k, H, W, 3]``, one-hot action ``[B, n + 1]``, the uint8
        target frame (used by the latent's posterior; ``None`` when imagining)."""
        x, skips = self._encode(frames, action, training, _fold(key, 1))
        x, extra, metrics = self.inject_latent(x, frames, target, action, training,
                                               _fold(key, 2))
        out = self._decode(x, skips, action, training, _fold(key, 3))
        out.extra_loss, out.metrics = extra, metrics
        return out

    # -- losses -----------------------------------------------------------------------------

    def frame_loss(self, logits: tf.Tensor,
                   target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``(clipped loss, plain cross-entropy, sub-pixel accuracy)``, each a mean over
        sub-pixels; the loss is ``relu(xent - video_modality_loss_cutoff)`` (t2t)."""
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(target, tf.int32), logits=logits)
        cutoff = float(self.hparams.video_modality_loss_cutoff)
        clipped = tf.nn.relu(xent - cutoff) if cutoff > 0 else xent
        hit = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                       tf.cast(target, tf.int32))
        return (tf.reduce_mean(clipped), tf.reduce_mean(xent),
                tf.reduce_mean(tf.cast(hit, tf.float32)))

    @staticmethod
    def reward_class(reward: tf.Tensor) -> tf.Tensor:
        """Reward -> class 0/1/2 for -1/0/+1 (rounded and clipped: SimPLe's clipped rewards)."""
        r = tf.clip_by_value(tf.round(tf.cast(reward, tf.float32)), -1.0, 1.0)
        return tf.cast(r, tf.int32) + 1

    def scheduled_sampling_probability(self, step: tf.Tensor) -> tf.Tensor:
        """Probability that an example's last input frame is the model's own prediction."""
        hp = self.hparams
        warmup = float(hp.scheduled_sampling_warmup_steps)
        return (float(hp.scheduled_sampling_prob) * inverse_exp(step, warmup / 4)
                * inverse_lin(step, warmup))

    def loss(self, batch: dict[str, tf.Tensor], training: bool,
             key: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Clipped frame cross-entropy + ``reward_loss_coef`` * reward CE + ``done_loss_coef``
        * termination BCE (+ the latent prior's CE, + the scheduled-sampling pass's frame loss).
        With ``training`` it also advances ``train_step_counter``."""
        hp = self.hparams
        inputs, targets = batch["inputs"], batch["targets"]
        action = self.action_features(batch["action"])
        metrics: dict[str, tf.Tensor] = {}
        total: tf.Tensor | float = 0.0
        if training and float(hp.scheduled_sampling_prob) > 0.0:
            step = self.train_step_counter.read_value()
            inputs, ss_loss, ss_metrics = self._scheduled_sampling(inputs, step, key)
            total += ss_loss
            metrics.update(ss_metrics)
        out = self.forward(inputs, action, targets, training, _fold(key, 7))
        frame, xent, accuracy = self.frame_loss(out.logits, targets)
        labels = self.reward_class(batch["reward"])
        reward_ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=out.reward_logits))
        term = tf.cast(batch["terminated"], tf.float32)
        done_bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=term, logits=out.done_logit))
        total += (frame + float(hp.reward_loss_coef) * reward_ce
                  + float(hp.done_loss_coef) * done_bce + out.extra_loss)
        total = tf.convert_to_tensor(total, tf.float32)
        reward_hit = tf.equal(tf.argmax(out.reward_logits, axis=-1, output_type=tf.int32), labels)
        metrics.update(out.metrics)
        metrics.update({
            "frame_loss": frame, "frame_xent": xent, "pixel_accuracy": accuracy,
            "reward_ce": reward_ce, "done_bce": done_bce,
            "reward_accuracy": tf.reduce_mean(tf.cast(reward_hit, tf.float32)),
        })
        if training:  # last: every schedule above read the step this batch trains at
            self.train_step_counter.assign_add(1)
        return total, metrics

    def _scheduled_sampling(self, inputs: tf.Tensor, step: tf.Tensor,
                            key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict]:
        """The window with its last frame replaced, per example, by the model's prediction of it
        from the window one step earlier (see the module docstring); and that pass's loss."""
        batch = tf.shape(inputs)[0]
        earlier = tf.concat([inputs[:, :1], inputs[:, :-1]], axis=1)
        unknown = self.action_features(tf.fill([batch], self.num_actions))
        last = inputs[:, -1]
        out = self.forward(earlier, unknown, last, True, _fold(key, 5))
        loss, _, _ = self.frame_loss(out.logits, last)
        guess = tf.stop_gradient(
            tf.cast(tf.argmax(out.logits, axis=-1, output_type=tf.int32), tf.uint8))
        p = self.scheduled_sampling_probability(step)
        use = tf.random.stateless_uniform([batch], _fold(key, 6)) < p
        last = tf.where(use[:, None, None, None], guess, last)
        mixed = tf.concat([inputs[:, :-1], last[:, None]], axis=1)
        return mixed, loss + out.extra_loss, {
            "scheduled_sampling_prob": p, "scheduled_sampling_frame_loss": loss}

    # -- imagination ------------------------------------------------------------------------

    def predict(self, inputs: tf.Tensor, action: tf.Tensor,
                key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Next frame (argmax of every sub-pixel's softmax, or a sample at
        ``pixel_sampling_temperature`` when ``sample_frames``) as uint8 ``[B, H, W, 3]``; the
        most likely reward class minus 1 (float32); termination where its probability > 0.5."""
        hp = self.hparams
        out = self.forward(inputs, self.action_features(action), None, False, _fold(key, 0))
        temperature = float(hp.pixel_sampling_temperature) if hp.sample_frames else 0.0
        frame = tf.cast(_gumbel_argmax(out.logits, temperature, _fold(key, 1)), tf.uint8)
        reward = tf.cast(tf.argmax(out.reward_logits, axis=-1), tf.float32) - 1.0
        return frame, reward, out.done_logit > 0.0

    # -- data-dependent initialisation ------------------------------------------------------

    def adapt(self, dataset: tf.data.Dataset) -> None:
        """Sets the output biases to the data's base rates from up to ``adapt_batches`` batches:
        each colour channel's histogram of target values, the reward classes' frequencies and
        the termination odds, so training starts from the best constant prediction."""
        counts = np.ones([self.channels, PIXEL_VALUES])  # add-one smoothing
        rewards = np.ones([REWARD_CLASSES])
        terms, seen = 0.0, 0
        for batch in dataset.take(int(self.hparams.adapt_batches)):
            target = np.asarray(batch["targets"]).reshape(-1, self.channels)
            for c in range(self.channels):
                counts[c] += np.bincount(target[:, c], minlength=PIXEL_VALUES)
            rewards += np.bincount(self.reward_class(batch["reward"]).numpy(),
                                   minlength=REWARD_CLASSES)
            terms += float(np.sum(np.asarray(batch["terminated"])))
            seen += len(target) // (self.height * self.width)
        if not seen:
            raise UserError(f"{type(self).__name__}.adapt: the dataset is empty; record data first")
        freq = counts / counts.sum(axis=1, keepdims=True)
        self.pixel_logits.bias.assign(np.log(freq).reshape(-1).astype(np.float32))
        self.reward_head.bias.assign(np.log(rewards / rewards.sum()).astype(np.float32))
        p = min(max(terms / seen, 1e-4), 1 - 1e-4)
        self.done_head.bias.assign(np.array([math.log(p / (1 - p))], np.float32))


# ----------------------------------------------------------------------------------------------
# The stochastic model with a discrete latent.


@register_model("next_frame_basic_stochastic_discrete")
class BasicStochasticDiscrete(BasicDeterministic):
    """SimPLe's world model: :class:`BasicDeterministic` plus a ``bottleneck_bits``-bit latent
    inferred from the target frame in training and sampled from an LSTM prior when imagining.

    Extra hparams (t2t's names; defaults from ``next_frame_basic_stochastic_discrete``):
    ``bottleneck_bits`` (a multiple of 8), ``bottleneck_noise``, ``discretize_warmup_steps``,
    ``latent_rnn_warmup_steps``, ``latent_rnn_max_sampling``, ``latent_use_max_probability``,
    ``latent_predictor_state_size``, ``latent_predictor_temperature``, ``complex_addn``.
    """

    _default_set = staticmethod(rgb_sets.next_frame_basic_stochastic_discrete)

    def _check_hparams(self, hp: HParams) -> None:
        super()._check_hparams(hp)
        bits = int(hp.bottleneck_bits)
        if bits < BITS_AT_ONCE or bits % BITS_AT_ONCE:
            raise UserError(f"{type(self).__name__}: bottleneck_bits must be a positive multiple "
                            f"of {BITS_AT_ONCE}, got {hp.bottleneck_bits}")

    def _build_layers(self) -> None:
        super()._build_layers()
        hp = self.hparams
        h, bits, state = int(hp.hidden_size), int(hp.bottleneck_bits), int(
            hp.latent_predictor_state_size)
        self.num_bits = bits
        # Posterior tower.
        self.post_embed = self._conv(h, 1, bias_initializer=keras.initializers.RandomNormal(
            stddev=0.01, seed=next(self._seeds)))
        self.post_inject = self._injection(h)
        self.post_conv1 = self._conv(2 * h, 8, strides=4, activation="relu")
        self.post_conv2 = self._conv(4 * h, 8, strides=4, activation="relu")
        self.post_bits = self._dense(bits, dtype="float32")
        # Injection of the bits at the bottleneck.
        f = self.bottleneck_filters
        self.unbottleneck_mul = self._dense(f)
        self.unbottleneck_add = self._dense(f) if hp.complex_addn else None
        # The prior: an LSTM over the latent's bytes, float32.
        self.prior_start = self._dense(3 * state, dtype="float32")  # first input, h0, c0
        self.prior_gates = self._dense(4 * state, dtype="float32")
        self.prior_embed = keras.layers.Embedding(
            2 ** BITS_AT_ONCE, state, dtype="float32",
            embeddings_initializer=keras.initializers.RandomUniform(
                -0.05, 0.05, seed=next(self._seeds)))
        self.prior_logits = self._dense(2 ** BITS_AT_ONCE, dtype="float32")

    # -- posterior --------------------------------------------------------------------------

    def posterior_logits(self, frames: tf.Tensor, target: tf.Tensor, action: tf.Tensor,
                         training: bool = False, key: tf.Tensor | None = None) -> tf.Tensor:
        """The posterior tower's pre-tanh bit logits, float32 ``[B, bottleneck_bits]``, from the
        input frames, the target frame and the one-hot action."""
        key = tf.zeros([2], tf.int32) if key is None else key
        x = self._frames(frames, training, _fold(key, 0))
        x = tf.concat([x, tf.cast(target, tf.float32) / 255.0], axis=-1)
        x = self._inject(self.post_inject, _add_timing(self.post_embed(x)), action)
        y1 = self.post_conv1(x)
        y2 = self.post_conv2(y1)
        pooled = [tf.reduce_mean(y1, axis=[1, 2]), tf.reduce_max(y1, axis=[1, 2]),
                  tf.reduce_mean(y2, axis=[1, 2]), tf.reduce_max(y2, axis=[1, 2])]
        return self.post_bits(tf.concat(pooled, axis=-1))

    def posterior_bits(self, inputs: tf.Tensor, action: tf.Tensor,
                       targets: tf.Tensor) -> tf.Tensor:
        """The noise-free posterior bits (+-1, float32 ``[B, bottleneck_bits]``) for uint8
        inputs ``[B, k, H, W, 3]``, int actions ``[B]`` and uint8 targets ``[B, H, W, 3]``."""
        logits = self.posterior_logits(inputs, targets, self.action_features(action))
        return tf.where(logits > 0, 1.0, -1.0)

    # -- prior ------------------------------------------------------------------------------

    def _lstm(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        i, f, g, o = tf.split(self.prior_gates(tf.concat([x, h], axis=-1)), 4, axis=-1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    def _prior_start(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """First LSTM input and state from the bottleneck, mean- and max-pooled over space."""
        pooled = tf.cast(tf.concat([tf.reduce_mean(x, axis=[1, 2]), tf.reduce_max(x, axis=[1, 2])],
                                   axis=-1), tf.float32)
        first, h, c = tf.split(self.prior_start(pooled), 3, axis=-1)
        return first, tf.tanh(h), c

    def prior_loss(self, x: tf.Tensor, bits: tf.Tensor, training: bool,
                   key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Teacher-forced cross-entropy (per byte, in nats) of the prior predicting the +-1
        ``bits`` from the bottleneck ``x``; and the fraction of bytes it gets right (argmax)."""
        target = bits_to_ints(tf.stop_gradient(bits))  # [B, G]
        inp, h, c = self._prior_start(x)
        rate = float(self.hparams.dropout)
        embedded = _dropout(self.prior_embed(target), rate, training, _fold(key, 0))
        logits = []
        for g in range(self.num_bits // BITS_AT_ONCE):
            h, c = self._lstm(inp, h, c)
            logits.append(self.prior_logits(_dropout(h, rate, training, _fold(key, 1 + g))))
            inp = embedded[:, g]
        logits = tf.stack(logits, axis=1)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=target, logits=logits))
        hit = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), target)
        return ce, tf.reduce_mean(tf.cast(hit, tf.float32))

    def sample_prior(self, x: tf.Tensor, key: tf.Tensor,
                     temperature: float | None = None) -> tf.Tensor:
        """Bits (+-1 float32 ``[B, bottleneck_bits]``) sampled byte by byte from the prior given
        the bottleneck ``x``, at ``latent_predictor_temperature`` (0: argmax)."""
        if temperature is None:
            temperature = float(self.hparams.latent_predictor_temperature)
        inp, h, c = self._prior_start(x)
        ints = []
        for g in range(self.num_bits // BITS_AT_ONCE):
            h, c = self._lstm(inp, h, c)
            byte = _gumbel_argmax(self.prior_logits(h), temperature, _fold(key, g))
            ints.append(byte)
            inp = self.prior_embed(byte)
        return ints_to_bits(tf.stack(ints, axis=1))

    def prior_bits(self, inputs: tf.Tensor, action: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        """Bits the prior samples for uint8 inputs ``[B, k, H, W, 3]`` and int actions ``[B]``
        (what ``predict`` uses), +-1 float32 ``[B, bottleneck_bits]``."""
        x, _ = self._encode(inputs, self.action_features(action), False, _fold(key, 1))
        return self.sample_prior(x, _fold(key, 2))

    # -- injection --------------------------------------------------------------------------

    def add_bits(self, x: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
        """``x * sigmoid(W z) + V z`` (``complex_addn``) or ``x + W z``, z broadcast over space."""
        z = tf.cast(bits, tf.float32)
        mul = self.unbottleneck_mul(z)[:, None, None, :]
        if self.unbottleneck_add is None:
            return x + mul
        return x * tf.sigmoid(mul) + self.unbottleneck_add(z)[:, None, None, :]

    def inject_latent(self, x: tf.Tensor, frames: tf.Tensor, target: tf.Tensor | None,
                      action: tf.Tensor, training: bool,
                      key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | float, dict]:
        """Training: posterior bits (noisy, warmed up, partly prior-sampled, sometimes skipped);
        otherwise prior-sampled bits. With a target, the prior's loss against the posterior."""
        hp = self.hparams
        if target is None:  # imagining: the prior alone
            return self.add_bits(x, self.sample_prior(x, _fold(key, 0))), 0.0, {}
        logits = self.posterior_logits(frames, target, action, training, _fold(key, 1))
        clean = tf.stop_gradient(tf.where(logits > 0, 1.0, -1.0))
        prior_ce, prior_acc = self.prior_loss(x, clean, training, _fold(key, 2))
        metrics = {"latent_prior_loss": prior_ce, "latent_prior_accuracy": prior_acc}
        if not training:  # evaluation: what imagination would do
            bits = self.sample_prior(x, _fold(key, 3))
            return self.add_bits(x, bits), prior_ce, metrics
        step = self.train_step_counter.read_value()
        shape = tf.shape(logits)
        noisy = logits + tf.random.stateless_truncated_normal(
            shape, _fold(key, 4), stddev=_POSTERIOR_NOISE_STD)
        soft = tf.tanh(noisy)
        hard = soft + tf.stop_gradient(tf.where(soft > 0, 1.0, -1.0) - soft)  # straight through
        flip = tf.random.stateless_uniform(shape, _fold(key, 5)) < float(hp.bottleneck_noise)
        hard = tf.where(flip, -hard, hard)
        p_hard = inverse_lin(step, float(hp.discretize_warmup_steps))
        bits = tf.where(tf.random.stateless_uniform(shape, _fold(key, 6)) < p_hard, hard, soft)
        p_prior = tf.constant(0.0)
        if float(hp.latent_rnn_max_sampling) > 0.0:
            sampled = tf.stop_gradient(self.sample_prior(x, _fold(key, 7)))
            p_prior = float(hp.latent_rnn_max_sampling) * inverse_lin(
                step, float(hp.latent_rnn_warmup_steps))
            take = tf.random.stateless_uniform(shape, _fold(key, 8)) < p_prior
            bits = tf.where(take, sampled, bits)
        p_use = float(hp.latent_use_max_probability) * inverse_lin(
            step, float(hp.latent_rnn_warmup_steps) / 2)
        use = tf.random.stateless_uniform(shape[:1], _fold(key, 9)) < p_use
        x = tf.where(use[:, None, None, None], self.add_bits(x, bits), x)
        metrics.update({"latent_use_prob": p_use, "latent_prior_sampling_prob": p_prior,
                        "latent_hard_prob": p_hard})
        return x, prior_ce, metrics
