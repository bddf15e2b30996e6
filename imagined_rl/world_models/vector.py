"""An ensemble of MLPs for vector observations (PETS / MBPO style, deterministic members).

Each of ``ensemble_size`` members maps (the last ``history`` observations, the action) to the
normalised change of state ``Δ = o_{t+1} - o_t``, the normalised reward and a termination logit.
The members' weights are stacked (``W [E, in, out]``), so the whole ensemble is one batched
matmul per layer and compiles with XLA.

Why these choices:

* Δ instead of ``o_{t+1}``: steps change the state little, so predicting the change (and adding
  it back) starts the model at "no change" and spends its capacity on the dynamics.
* Normalisation constants (of the inputs, of Δ and of the reward) come from the data in
  :meth:`VectorEnsemble.adapt` and live in non-trainable ``tf.Variable``s, so a checkpoint of the
  model restores them with the weights.
* Termination is learned from ``terminated``, never ``done``: a time-limit cut is a property of
  the data collection, not of the environment's dynamics.
* Every member trains on its own bootstrap resample of each batch (indices drawn with
  replacement from ``key``), which decorrelates the members as in PETS; at prediction time a
  random member per sample (``predict_mode="random"``, PETS' TS1) or the ensemble mean
  (``"mean"``) answers.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from imagined_rl.data import DataSpec
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_model
from imagined_rl.world_models.base import WorldModel, model_hparams

PREDICT_MODES = ("random", "mean")
_MIN_STD = 1e-6  # a constant feature (std 0) is left unscaled instead of divided by ~0


@register_model("vector_ensemble")
class VectorEnsemble(WorldModel):
    """PETS/MBPO-style ensemble of MLPs predicting Δstate, reward and termination.

    Hparams: ``ensemble_size``, ``hidden_layers`` (widths), ``activation`` (a Keras activation
    name such as ``"swish"``), ``weight_decay`` (L2 on the weights, added to the loss),
    ``bootstrap`` (per-member resampled batches), ``predict_mode`` (``"random"`` or ``"mean"``),
    ``adapt_batches`` (batches :meth:`adapt` reads), ``history``, ``seed`` (initialisation).
    """

    observation_kinds = ("vector",)

    def __init__(self, spec: DataSpec, hparams: HParams, name: str | None = None):
        super().__init__(spec, hparams, name=name)
        self.hparams = hp = model_hparams(self.hparams, seed=0)
        self.ensemble_size = int(hp.ensemble_size)
        if self.ensemble_size < 1:
            raise UserError(f"ensemble_size must be >= 1, got {hp.ensemble_size}")
        if hp.predict_mode not in PREDICT_MODES:
            raise UserError(
                f"predict_mode must be one of {', '.join(PREDICT_MODES)}, got {hp.predict_mode!r}"
            )
        self.activation = tf.keras.activations.get(hp.activation)
        self.obs_dim = int(spec.obs_shape[0])
        if spec.discrete:
            self.action_dim = int(spec.action["n"])
        else:
            self.action_dim = int(np.prod(spec.action_shape, dtype=np.int64))
        self.in_dim = self.history * self.obs_dim + self.action_dim
        self.out_dim = self.obs_dim + 2  # Δ, reward, termination logit

        def constant(value: float, shape: list[int], name: str) -> tf.Variable:
            return tf.Variable(tf.fill(shape, value), trainable=False, name=name)

        self.in_mean = constant(0.0, [self.in_dim], "in_mean")
        self.in_std = constant(1.0, [self.in_dim], "in_std")
        self.delta_mean = constant(0.0, [self.obs_dim], "delta_mean")
        self.delta_std = constant(1.0, [self.obs_dim], "delta_std")
        self.reward_mean = constant(0.0, [], "reward_mean")
        self.reward_std = constant(1.0, [], "reward_std")

        sizes = [self.in_dim, *(int(h) for h in hp.hidden_layers), self.out_dim]
        seed = int(hp.seed)
        self.weights: list[tf.Variable] = []
        self.biases: list[tf.Variable] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            # Truncated normal, std 1/(2 sqrt(fan_in)) as in MBPO; each member its own draw.
            w = tf.random.stateless_truncated_normal(
                [self.ensemble_size, n_in, n_out], seed=[seed, i], stddev=0.5 / math.sqrt(n_in)
            )
            self.weights.append(tf.Variable(w, name=f"w{i}"))
            self.biases.append(tf.Variable(tf.zeros([self.ensemble_size, 1, n_out]), name=f"b{i}"))

    # -- data-dependent constants ---------------------------------------------------------

    def adapt(self, dataset: tf.data.Dataset) -> None:
        """Sets the input, Δstate and reward normalisation from up to ``adapt_batches`` batches,
        and the termination bias to the data's log-odds (so training starts at the base rate)."""
        feats, deltas, rewards, terms = [], [], [], []
        for batch in dataset.take(int(self.hparams.adapt_batches)):
            feats.append(self._features(batch["inputs"], batch["action"]).numpy())
            deltas.append(self._delta(batch["inputs"], batch["targets"]).numpy())
            rewards.append(np.asarray(batch["reward"], np.float64))
            terms.append(np.asarray(batch["terminated"], np.float64))
        if not feats:
            raise UserError(f"{self.name}.adapt: the dataset is empty; record data first")
        x, d = np.concatenate(feats), np.concatenate(deltas)
        r, t = np.concatenate(rewards), np.concatenate(terms)
        self.in_mean.assign(x.mean(0))
        self.in_std.assign(_safe_std(x.std(0)))
        self.delta_mean.assign(d.mean(0))
        self.delta_std.assign(_safe_std(d.std(0)))
        self.reward_mean.assign(r.mean())
        self.reward_std.assign(_safe_std(r.std()))
        p = float(np.clip(t.mean(), 1e-4, 1 - 1e-4))
        bias = self.biases[-1].numpy()
        bias[:, 0, -1] = math.log(p / (1 - p))
        self.biases[-1].assign(bias)

    # -- the network ----------------------------------------------------------------------

    def _features(self, inputs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
        """Un-normalised network input ``[B, history * obs_dim + action_dim]``."""
        obs = tf.reshape(tf.cast(inputs, tf.float32), [-1, self.history * self.obs_dim])
        if self.spec.discrete:
            act = tf.one_hot(tf.cast(action, tf.int32), self.action_dim, dtype=tf.float32)
        else:
            act = tf.reshape(tf.cast(action, tf.float32), [-1, self.action_dim])
        return tf.concat([obs, act], axis=-1)

    def _delta(self, inputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """``o_{t+1} - o_t`` as float32 ``[B, obs_dim]``."""
        last = tf.cast(inputs[:, -1], tf.float32)
        return tf.reshape(tf.cast(targets, tf.float32) - last, [-1, self.obs_dim])

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        """Every member on its own normalised inputs ``x [E, B, in]`` -> ``[E, B, out]``."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = tf.matmul(x, w) + b
            if i < last:
                x = self.activation(x)
        return x

    def _normalise(self, inputs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
        return (self._features(inputs, action) - self.in_mean) / self.in_std

    # -- the contract ---------------------------------------------------------------------

    def loss(self, batch: dict[str, tf.Tensor], training: bool,
             key: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Mean over members of: MSE(normalised Δ) + MSE(normalised reward) + BCE(terminated),
        plus ``weight_decay`` * L2 of the weights. With ``training`` and ``bootstrap`` each
        member sees its own resample (with replacement) of the batch."""
        e = self.ensemble_size
        x = self._normalise(batch["inputs"], batch["action"])
        delta = (self._delta(batch["inputs"], batch["targets"]) - self.delta_mean) / self.delta_std
        reward = (tf.cast(batch["reward"], tf.float32) - self.reward_mean) / self.reward_std
        term = tf.cast(batch["terminated"], tf.float32)
        target = tf.concat([delta, reward[:, None], term[:, None]], axis=-1)  # [B, out]
        n = tf.shape(x)[0]
        if training and bool(self.hparams.bootstrap):
            idx = tf.random.stateless_uniform([e, n], seed=key, maxval=n, dtype=tf.int32)
            xs, targets = tf.gather(x, idx), tf.gather(target, idx)  # [E, B, ...]
        else:
            xs = tf.broadcast_to(x[None], [e, n, self.in_dim])
            targets = tf.broadcast_to(target[None], [e, n, self.out_dim])
        out = self._forward(xs)
        obs_mse = tf.reduce_mean(tf.square(out[..., : self.obs_dim] - targets[..., : self.obs_dim]))
        reward_mse = tf.reduce_mean(tf.square(out[..., -2] - targets[..., -2]))
        logit, t = out[..., -1], targets[..., -1]
        term_bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=logit))
        l2 = tf.add_n([tf.reduce_sum(tf.square(w)) for w in self.weights]) / e
        total = obs_mse + reward_mse + term_bce + float(self.hparams.weight_decay) * 0.5 * l2
        term_acc = tf.reduce_mean(tf.cast(tf.equal(tf.cast(logit > 0, tf.float32), t), tf.float32))
        return total, {
            "loss": total, "obs_mse": obs_mse, "reward_mse": reward_mse,
            "termination_bce": term_bce, "termination_accuracy": term_acc, "weight_l2": l2,
        }

    def predict(self, inputs: tf.Tensor, action: tf.Tensor,
                key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``next_obs = o_t + Δ`` (denormalised), reward, ``done = sigmoid(logit) > 0.5``, from
        one random member per sample (``predict_mode="random"``) or the members' mean."""
        x = self._normalise(inputs, action)
        n = tf.shape(x)[0]
        out = self._forward(tf.broadcast_to(x[None], [self.ensemble_size, n, self.in_dim]))
        if self.hparams.predict_mode == "mean":
            raw = tf.reduce_mean(out[..., :-1], axis=0)
            p_term = tf.reduce_mean(tf.sigmoid(out[..., -1]), axis=0)
            done = p_term > 0.5
        else:
            member = tf.random.stateless_uniform(
                [n], seed=key, maxval=self.ensemble_size, dtype=tf.int32)
            picked = tf.gather(tf.transpose(out, [1, 0, 2]), member, batch_dims=1)  # [B, out]
            raw, done = picked[:, :-1], picked[:, -1] > 0.0
        delta = raw[:, : self.obs_dim] * self.delta_std + self.delta_mean
        last = tf.cast(inputs[:, -1], tf.float32)
        next_obs = tf.cast(last + tf.reshape(delta, tf.shape(last)), inputs.dtype)
        reward = raw[:, self.obs_dim] * self.reward_std + self.reward_mean
        return next_obs, reward, done


def _safe_std(std: np.ndarray | float) -> np.ndarray:
    """``std`` with (near-)zero entries replaced by 1, so constant features stay as they are."""
    std = np.asarray(std, np.float64)
    return np.where(std < _MIN_STD, 1.0, std)
