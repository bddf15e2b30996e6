"""A small convolutional model for binary grid observations (MinAtar's 10x10xC frames).

The ``history`` input frames are stacked along channels (``k * C``) and go through a few
convolutions (``kernel_sizes``) plus residual blocks of two 3x3 convolutions. Objects move about
one cell per step, so a cell's next value depends on a small neighbourhood: two 3x3 layers see the
5x5 cells a ball and its trail span. ``block`` > 1 first folds each ``block x block`` patch of
cells into channels (space-to-depth) and unfolds the output the same way: the 10x10 grid becomes
5x5 with 4x the channels, which keeps the receptive field (one 3x3 layer on 2x2 blocks sees at
least two cells on every side) at a quarter of the positions, and wide channels are what CPU
convolution kernels run efficiently (on two cores, 8-channel 3x3 convolutions ran at ~50 GFLOP/s,
32-channel ones at ~230). The action conditions every convolution by FiLM (a per-channel scale and
shift computed from the one-hot action), as SimPLe conditions its frame predictor at each scale. A
1x1 convolution gives per-cell Bernoulli logits for the ``C`` channels of the next frame; pooled
features (mean and max over cells, so that one local event such as a brick being hit is visible)
feed the reward head, a classifier over ``reward_values`` (SimPLe's {-1, 0, 1}), and the
termination head, trained on ``terminated`` (not ``done``: a time-limit cut is no event of the
game).

``global_units`` > 0 adds a dense path across the whole grid after the convolutions (the
flattened features and the action -> ``global_units`` ReLU units -> a per-cell correction added
back, and the units also feed the heads): what convolutions cannot see is where on the grid
something is and what happens far from it, such as Freeway's chicken reaching the top row (a
reward, and the chicken reappearing at the bottom).

:meth:`GridConv.adapt` sets the output biases to the data's base rates (channel occupancy, reward
class frequencies, termination odds), so training starts from the best constant prediction
instead of spending its first steps finding it, and checks that every reward seen is one of
``reward_values``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import tensorflow as tf

from imagined_rl.data import DataSpec
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_model
from imagined_rl.world_models.base import WorldModel, model_hparams

_REWARD_TOLERANCE = 1e-3  # a reward farther than this from every class is a configuration error


@register_model("grid_conv")
class GridConv(WorldModel):
    """Action-conditioned (FiLM) conv net: per-cell next-frame logits, reward class, termination.

    Hparams: ``history``, ``block`` (space-to-depth patch size; 1 = full resolution),
    ``filters``, ``kernel_sizes`` (one plain convolution each), ``residual_blocks`` (two 3x3
    convolutions each), ``global_units`` (the dense path; 0: none), ``head_units``
    (reward/termination MLP),
    ``reward_values`` (the reward classes), ``sample`` (``predict`` samples cells from their
    Bernoulli instead of thresholding at 0.5), ``frame_loss_weight``, ``adapt_batches``, ``seed``.
    """

    observation_kinds = ("grid",)
    convolutional = True

    def __init__(self, spec: DataSpec, hparams: HParams, name: str | None = None):
        super().__init__(spec, hparams, name=name)
        self.hparams = hp = model_hparams(self.hparams, seed=0)
        self.height, self.width, self.channels = (int(d) for d in spec.obs_shape)
        self.block = int(hp.block)
        if self.block < 1 or self.height % self.block or self.width % self.block:
            raise UserError(f"block={hp.block} must be >= 1 and divide the grid's "
                            f"{self.height}x{self.width} cells")
        if spec.discrete:
            self.action_dim = int(spec.action["n"])
        else:
            self.action_dim = int(np.prod(spec.action_shape, dtype=np.int64))
        values = [float(v) for v in hp.reward_values]
        if not values or sorted(set(values)) != values:
            raise UserError(
                f"reward_values must be distinct and increasing, got {list(hp.reward_values)}")
        self.reward_values = tf.constant(values, tf.float32)
        self.num_rewards = len(values)
        f = int(hp.filters)
        seed = int(hp.seed)
        counter = itertools.count()

        def weight(shape: list[int], fan_in: int, gain: float = math.sqrt(2.0)) -> tf.Variable:
            """He-normal initial weights, drawn statelessly from ``seed`` (reproducible)."""
            std = gain / math.sqrt(fan_in)
            i = next(counter)
            return tf.Variable(
                tf.random.stateless_truncated_normal(shape, seed=[seed, i], stddev=std / 0.88),
                name=f"w{i}")

        def conv(c_in: int, c_out: int, size: int = 3, gain: float = math.sqrt(2.0)) -> dict:
            """A convolution and, for FiLM, a zero-initialised map action -> (scale, shift)."""
            return {
                "kernel": weight([size, size, c_in, c_out], size * size * c_in, gain),
                "bias": tf.Variable(tf.zeros([c_out])),
                "film": tf.Variable(tf.zeros([self.action_dim, 2 * c_out])),
            }

        cells = self.block * self.block
        c_in = self.history * self.channels * cells
        sizes = [int(k) for k in hp.kernel_sizes]
        if not sizes or min(sizes) < 1:
            raise UserError(f"kernel_sizes must list >= 1 positive sizes, got {hp.kernel_sizes}")
        self.convs = [conv(c_in if i == 0 else f, f, k) for i, k in enumerate(sizes)]
        self.blocks = [
            (conv(f, f), conv(f, f, gain=0.5)) for _ in range(int(hp.residual_blocks))
        ]
        self.frame_kernel = weight([1, 1, f, self.channels * cells], f, gain=1.0)
        self.frame_bias = tf.Variable(tf.zeros([self.channels]), name="frame_bias")
        self.global_units = g = int(hp.get("global_units", 0))
        if g:  # the dense path across the whole grid (see _forward)
            n_in = (self.height // self.block) * (self.width // self.block) * f
            self.global_in = weight([n_in + self.action_dim, g], n_in + self.action_dim)
            self.global_bias = tf.Variable(tf.zeros([g]), name="global_bias")
            self.global_out = weight([g, n_in], g, gain=0.5)
        units = int(hp.head_units)
        n_head = 2 * f + self.action_dim + g
        self.head_w1 = weight([n_head, units], n_head)
        self.head_b1 = tf.Variable(tf.zeros([units]), name="head_b1")
        self.head_w2 = weight([units, self.num_rewards + 1], units, gain=1.0)
        self.head_b2 = tf.Variable(tf.zeros([self.num_rewards + 1]), name="head_b2")

    # -- data-dependent constants ---------------------------------------------------------

    def adapt(self, dataset: tf.data.Dataset) -> None:
        """Output biases from the base rates of up to ``adapt_batches`` batches; a reward that is
        none of ``reward_values`` is a :class:`UserError` (clip rewards or change the classes)."""
        occupancy, rewards, terms = [], [], []
        for batch in dataset.take(int(self.hparams.adapt_batches)):
            occupancy.append(np.mean(np.asarray(batch["targets"], np.float64), axis=(1, 2)))
            rewards.append(np.asarray(batch["reward"], np.float64))
            terms.append(np.asarray(batch["terminated"], np.float64))
        if not rewards:
            raise UserError(f"{self.name}.adapt: the dataset is empty; record data first")
        r = np.concatenate(rewards)
        values = self.reward_values.numpy().astype(np.float64)
        gap = np.abs(r[:, None] - values[None, :]).min(axis=1)
        if gap.max() > _REWARD_TOLERANCE:
            bad = sorted(set(np.round(r[gap > _REWARD_TOLERANCE], 4).tolist()))[:5]
            raise UserError(
                f"{type(self).__name__}: rewards {bad} in the data are not among reward_values "
                f"{values.tolist()}; record with reward clipping or set --hparams "
                "reward_values=[...]")
        cls = np.abs(r[:, None] - values[None, :]).argmin(axis=1)
        freq = (np.bincount(cls, minlength=self.num_rewards) + 1.0) / (len(r) + self.num_rewards)
        p_term = float(np.clip(np.concatenate(terms).mean(), 1e-4, 1 - 1e-4))
        self.head_b2.assign(np.concatenate([np.log(freq), [math.log(p_term / (1 - p_term))]]))
        p_cell = np.clip(np.concatenate(occupancy).mean(axis=0), 1e-4, 1 - 1e-4)
        self.frame_bias.assign(np.log(p_cell / (1 - p_cell)))

    # -- the network ----------------------------------------------------------------------

    def _action_features(self, action: tf.Tensor) -> tf.Tensor:
        if self.spec.discrete:
            return tf.one_hot(tf.cast(action, tf.int32), self.action_dim, dtype=tf.float32)
        return tf.reshape(tf.cast(action, tf.float32), [-1, self.action_dim])

    @staticmethod
    def _conv(layer: dict, x: tf.Tensor, act: tf.Tensor) -> tf.Tensor:
        """'same' convolution, then FiLM: ``h * (1 + scale(a)) + shift(a)``."""
        h = tf.nn.conv2d(x, layer["kernel"], strides=1, padding="SAME") + layer["bias"]
        scale, shift = tf.split(tf.matmul(act, layer["film"]), 2, axis=-1)
        return h * (1.0 + scale[:, None, None, :]) + shift[:, None, None, :]

    def _forward(self, inputs: tf.Tensor, action: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(cell logits [B, H, W, C], head logits [B, num_rewards + 1])``."""
        x = tf.cast(inputs, tf.float32)  # [B, k, H, W, C]
        x = tf.transpose(x, [0, 2, 3, 1, 4])
        x = tf.reshape(x, [-1, self.height, self.width, self.history * self.channels])
        if self.block > 1:
            x = tf.nn.space_to_depth(x, self.block)
        act = self._action_features(action)
        for layer in self.convs:
            x = tf.nn.relu(self._conv(layer, x, act))
        for first, second in self.blocks:
            h = tf.nn.relu(self._conv(first, x, act))
            x = tf.nn.relu(x + self._conv(second, h, act))
        pooled = [tf.reduce_mean(x, axis=[1, 2]), tf.reduce_max(x, axis=[1, 2]), act]
        if self.global_units:
            flat = tf.reshape(x, [tf.shape(x)[0], -1])
            g = tf.nn.relu(tf.matmul(tf.concat([flat, act], -1), self.global_in)
                           + self.global_bias)
            x = tf.nn.relu(x + tf.reshape(tf.matmul(g, self.global_out), tf.shape(x)))
            pooled.append(g)
        cells = tf.nn.conv2d(x, self.frame_kernel, strides=1, padding="VALID")
        if self.block > 1:
            cells = tf.nn.depth_to_space(cells, self.block)
        cells += self.frame_bias
        pooled = tf.concat(pooled, axis=-1)
        h = tf.nn.relu(tf.matmul(pooled, self.head_w1) + self.head_b1)
        return cells, tf.matmul(h, self.head_w2) + self.head_b2

    def reward_class(self, reward: tf.Tensor) -> tf.Tensor:
        """The index of the reward class nearest to each reward, int32 ``[B]``."""
        gap = tf.abs(tf.cast(reward, tf.float32)[:, None] - self.reward_values[None, :])
        return tf.argmin(gap, axis=-1, output_type=tf.int32)

    # -- the contract ---------------------------------------------------------------------

    def loss(self, batch: dict[str, tf.Tensor], training: bool,
             key: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """``frame_loss_weight`` * per-cell BCE (mean over cells and channels) + reward
        cross-entropy + termination BCE. Deterministic: ``key`` is unused."""
        del training, key
        cells, heads = self._forward(batch["inputs"], batch["action"])
        target = tf.cast(batch["targets"], tf.float32)
        frame_bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=cells))
        cls = self.reward_class(batch["reward"])
        reward_logits, term_logit = heads[:, :-1], heads[:, -1]
        reward_ce = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls, logits=reward_logits))
        term = tf.cast(batch["terminated"], tf.float32)
        term_bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=term, logits=term_logit))
        total = float(self.hparams.frame_loss_weight) * frame_bce + reward_ce + term_bce
        wrong = tf.not_equal(tf.cast(cells > 0.0, tf.float32), target)
        accuracy = lambda hit: tf.reduce_mean(tf.cast(hit, tf.float32))
        return total, {
            "loss": total, "frame_bce": frame_bce, "reward_ce": reward_ce,
            "termination_bce": term_bce,
            "cell_accuracy": 1.0 - accuracy(wrong),
            "frame_mismatches": tf.reduce_mean(tf.reduce_sum(tf.cast(wrong, tf.float32),
                                                             axis=[1, 2, 3])),
            "reward_accuracy": accuracy(
                tf.equal(tf.argmax(reward_logits, axis=-1, output_type=tf.int32), cls)),
            "termination_accuracy": accuracy(tf.equal(tf.cast(term_logit > 0.0, tf.float32),
                                                      term)),
        }

    def predict(self, inputs: tf.Tensor, action: tf.Tensor,
                key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Next frame (cells on where ``sigmoid(logit) > 0.5``, or sampled from ``key`` when
        ``sample``), in the inputs' dtype; the most likely reward class's value; termination
        where its probability is above 0.5."""
        cells, heads = self._forward(inputs, action)
        if bool(self.hparams.sample):
            on = tf.random.stateless_uniform(tf.shape(cells), seed=key) < tf.sigmoid(cells)
        else:
            on = cells > 0.0
        next_obs = tf.cast(on, inputs.dtype)
        reward = tf.gather(self.reward_values, tf.argmax(heads[:, :-1], axis=-1))
        return next_obs, reward, heads[:, -1] > 0.0
