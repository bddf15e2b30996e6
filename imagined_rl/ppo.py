"""Proximal Policy Optimization inside one TensorFlow graph, readable top to bottom.

One call of :meth:`PPO.train` runs ``iterations_per_call`` whole PPO iterations inside a single
``tf.function`` (XLA-compiled when the env allows it), touching the host once, to return metrics:

    for each iteration:
        rollout      ``epoch_length`` steps x ``num_envs`` envs with ``tf.while_loop``
        gae          truncation-aware advantages (bootstrap from ``final_obs`` on truncation only)
        update       ``optimization_epochs`` x ``num_minibatches`` shuffled minibatches of
                     clipped surrogate + value loss - entropy bonus, global-norm clipping, Adam
                     with a linearly annealed learning rate

Every tensor of the agent carries a leading *seed* axis ``S`` (``num_seeds`` hparam): S independent
agents (parameters, optimiser state, envs) train in the same compiled call, which is how seed and
hparam sweeps become cheap. With ``num_seeds=1`` it is plain PPO. The env sees ``S * num_envs``
envs; agent ``s`` owns envs ``[s * num_envs, (s + 1) * num_envs)``.

Hyperparameter names follow tensor2tensor's PPO where one exists (``learning_rate_constant``,
``clipping_coef``, ``gae_gamma``, ``gae_lambda``, ``entropy_loss_coef``, ``value_loss_coef``,
``optimization_epochs``, ``epoch_length``, ``clip_grad_norm``, ``policy_layers``, ``value_layers``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import tensorflow as tf

from imagined_rl.distribute import accelerator, collectives_in_xla
from imagined_rl.envs.core import BatchEnv, Box, Discrete, make_key, normal, split, uniform
from imagined_rl.hparams_lib import HParamsError

Params = dict[str, Any]
UPDATE_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")
METRICS = ("return_sum", "episodes", "length_sum", *UPDATE_METRICS)  # per iteration, per agent
_LOG_2PI = math.log(2.0 * math.pi)
GATHERABLE = (tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)
# carry entries with a leading agent (params, Adam moments) or agent-major env axis
SEED_PARTS = ("params", "m", "v", "env_state", "obs", "episode_return", "episode_length")

# --------------------------------------------------------------------------------------------
# Networks: plain MLPs over batched weights [S, in, out], so S agents share each matmul.
# --------------------------------------------------------------------------------------------


def init_mlp(sizes: list[int], last_gain: float, num_seeds: int, seed: int) -> list:
    """Orthogonally initialised layers ``[(W [S, in, out], b [S, out])]`` (gain sqrt(2) hidden)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        gain = last_gain if i == len(sizes) - 2 else math.sqrt(2.0)
        ws = [
            tf.keras.initializers.Orthogonal(gain, seed=seed * 1009 + s * 101 + i)((n_in, n_out))
            for s in range(num_seeds)
        ]
        layers.append((tf.stack(ws), tf.zeros([num_seeds, n_out])))
    return layers


def mlp(layers: list, x: tf.Tensor, activation: str) -> tf.Tensor:
    """Applies ``layers`` to ``x [S, B, in]``; ``activation`` between layers, not after the last."""
    act = tf.keras.activations.get(activation)
    for i, (w, b) in enumerate(layers):
        x = tf.matmul(x, w) + b[:, None, :]
        if i < len(layers) - 1:
            x = act(x)
    return x


NETWORKS = ("mlp", "nature_cnn", "impala_cnn")


def init_conv(size: int, n_in: int, n_out: int, num_seeds: int, seed: int) -> tuple:
    """One orthogonally initialised conv layer ``(W [S, k, k, in, out], b [S, out])``."""
    init = lambda s: tf.keras.initializers.Orthogonal(math.sqrt(2.0), seed=seed * 1009 + s)
    w = tf.stack([init(s)((size, size, n_in, n_out)) for s in range(num_seeds)])
    return w, tf.zeros([num_seeds, n_out])


def _per_agent(fn, x: tf.Tensor) -> tf.Tensor:
    """Applies ``fn(i, images [B, H, W, C])`` to each agent's slice of ``[S, B, H, W, C]``."""
    outs = [fn(i, x[i]) for i in range(x.shape[0])]
    return outs[0][None] if len(outs) == 1 else tf.stack(outs)


def conv(layer: tuple, x: tf.Tensor, stride: int = 1) -> tf.Tensor:
    """``x [S, B, H, W, C]`` -> each agent's conv (SAME padding) of its own images."""
    w, b = layer
    return _per_agent(lambda i, z: tf.nn.conv2d(z, w[i], stride, "SAME") + b[i], x)


def init_torso(network: str, obs_shape: tuple[int, ...], hp: Any, num_seeds: int,
               seed: int) -> tuple[dict, int]:
    """A conv torso's parameters and its output width.

    ``nature_cnn``: Mnih et al. (2015)'s convs (``conv_filters``/``conv_kernels``/
    ``conv_strides``, default 32-64-64, 8-4-3, 4-2-1) and a ``torso_units`` ReLU layer (512).
    ``impala_cnn``: Espeholt et al. (2018)'s small ResNet, one stage per ``impala_channels``
    (16-32-32): conv 3x3, max-pool 3x3 stride 2, two residual blocks; then ``torso_units`` (256).
    Padding is SAME (unlike the papers' VALID), so small grids (MinAtar's 10x10) work too and
    the dense layer sees ``ceil(H / stride)``-sized maps (Nature CNN on 84x84: 11x11x64).
    """
    if len(obs_shape) != 3:
        raise HParamsError(f"network={network} needs image observations [H, W, C], got shape "
                           f"{list(obs_shape)}; use network=mlp")
    h, w, c = obs_shape
    layers: dict[str, Any] = {"convs": []}
    if network == "nature_cnn":
        for i, (f, k, st) in enumerate(zip(hp.conv_filters, hp.conv_kernels, hp.conv_strides)):
            layers["convs"].append(init_conv(int(k), c, int(f), num_seeds, seed + 31 * i))
            c, h, w = int(f), -(-h // int(st)), -(-w // int(st))
    else:
        for i, f in enumerate(hp.impala_channels):
            stage = [init_conv(3, c, int(f), num_seeds, seed + 31 * i)]
            stage += [init_conv(3, int(f), int(f), num_seeds, seed + 31 * i + j) for j in
                      range(1, 5)]
            layers["convs"].append(stage)
            c, h, w = int(f), -(-h // 2), -(-w // 2)
    layers["dense"] = init_mlp([h * w * c, int(hp.torso_units)], math.sqrt(2.0), num_seeds,
                               seed + 997)
    return layers, int(hp.torso_units)


def torso(network: str, layers: dict, x: tf.Tensor, hp: Any) -> tf.Tensor:
    """Image features ``[S, B, H, W, C]`` -> ``[S, B, torso_units]`` (see :func:`init_torso`)."""
    if network == "nature_cnn":
        for layer, st in zip(layers["convs"], hp.conv_strides):
            x = tf.nn.relu(conv(layer, x, int(st)))
    else:
        pool = lambda _, z: tf.nn.max_pool2d(z, 3, 2, "SAME")
        for first, *blocks in layers["convs"]:
            x = _per_agent(pool, conv(first, x))
            for a, b in zip(blocks[::2], blocks[1::2]):
                x = x + conv(b, tf.nn.relu(conv(a, tf.nn.relu(x))))
        x = tf.nn.relu(x)
    s, b = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, [s, b, int(np.prod(x.shape[2:]))])
    return tf.nn.relu(mlp(layers["dense"], x, "relu"))


# --------------------------------------------------------------------------------------------
# Policy distributions: categorical (Discrete) and diagonal Gaussian (Box).
# --------------------------------------------------------------------------------------------


def categorical_sample(logits: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Samples int32 actions from ``logits [..., A]``."""
    gumbel = -tf.math.log(-tf.math.log(uniform(key, tf.shape(logits), 1e-20, 1.0)))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)  # Gumbel-max


def categorical_log_prob(logits: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    logp = tf.nn.log_softmax(logits)
    return tf.gather(logp, action, batch_dims=action.shape.rank)


def categorical_entropy(logits: tf.Tensor) -> tf.Tensor:
    logp = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(logp) * logp, axis=-1)


def gaussian_log_prob(mean: tf.Tensor, log_std: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    z = (action - mean) * tf.exp(-log_std)
    return tf.reduce_sum(-0.5 * tf.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(log_std: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)


# --------------------------------------------------------------------------------------------
# Advantages and loss: pure functions, each checked against NumPy in tests/test_ppo.py.
# --------------------------------------------------------------------------------------------


def gae(
    rewards: tf.Tensor,
    values: tf.Tensor,
    last_value: tf.Tensor,
    terminated: tf.Tensor,
    truncated: tf.Tensor,
    final_values: tf.Tensor,
    gamma: float,
    lam: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Truncation-aware generalised advantage estimation over time-major ``[T, ...]`` inputs.

    ``values[t]`` is V(obs_t); ``last_value`` is V of the observation after the last step.
    Where step t ends an episode the next-state value is 0 if it *terminated* and
    ``final_values[t]`` (V of the real last observation) if it was *truncated* by a time limit;
    either way the advantage recursion stops there. Returns ``(advantages, value_targets)``.
    """
    next_values = tf.concat([values[1:], last_value[None]], axis=0)
    next_values = tf.where(truncated, final_values, next_values)
    next_values = tf.where(terminated, tf.zeros_like(next_values), next_values)
    deltas = rewards + gamma * next_values - values
    carry = gamma * lam * (1.0 - tf.cast(tf.logical_or(terminated, truncated), tf.float32))

    def body(acc: tf.Tensor, x: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        delta, c = x
        return delta + c * acc

    advantages = tf.scan(body, (deltas, carry), initializer=tf.zeros_like(last_value), reverse=True)
    return advantages, advantages + values


def ppo_loss(
    log_prob: tf.Tensor,
    old_log_prob: tf.Tensor,
    advantages: tf.Tensor,
    value: tf.Tensor,
    old_value: tf.Tensor,
    returns: tf.Tensor,
    entropy: tf.Tensor,
    clip: float,
    value_coef: float,
    entropy_coef: float,
    clip_value: bool = True,
    normalize_advantages: bool = True,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Clipped-surrogate PPO loss on ``[S, B]`` inputs, averaged over B: one loss per agent ``[S]``.

    ``total = policy_loss + value_coef * value_loss - entropy_coef * entropy``. Advantages are
    normalised per agent over the minibatch; the value loss is ``0.5 * max(unclipped, clipped)``
    squared error when ``clip_value``.
    """
    if normalize_advantages:
        mean, var = tf.nn.moments(advantages, axes=[-1], keepdims=True)
        advantages = (advantages - mean) / (tf.sqrt(var) + 1e-8)
    log_ratio = log_prob - old_log_prob
    ratio = tf.exp(log_ratio)
    surrogate = tf.minimum(
        ratio * advantages, tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages
    )
    value_err = tf.square(value - returns)
    if clip_value:
        clipped = old_value + tf.clip_by_value(value - old_value, -clip, clip)
        value_err = tf.maximum(value_err, tf.square(clipped - returns))
    # Every mean in one reduction (XLA:CPU pays a dispatch per op, and splits each reduction
    # in two); the gradient of a mean does not need its value.
    names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
    means = tf.reduce_mean(tf.stack([
        -surrogate, 0.5 * value_err, entropy, (ratio - 1.0) - log_ratio,
        tf.cast(tf.abs(ratio - 1.0) > clip, tf.float32)]), axis=-1)
    stats = dict(zip(names, tf.unstack(means)))
    total = stats["policy_loss"] + value_coef * stats["value_loss"] - entropy_coef * stats[
        "entropy"]
    return total, stats


def episode_stats(reward: tf.Tensor, done: tf.Tensor, episode_return: tf.Tensor,
                  episode_length: tf.Tensor) -> tuple[dict, tf.Tensor, tf.Tensor]:
    """The episodes a rollout closed, from its ``[T, S, N]`` rewards and done flags and the
    open episodes' ``[S, N]`` return and length at its start.

    Returns ``({"return_sum", "episodes", "length_sum"}: [S], return, length)``: the sums over
    the closed episodes per agent, and the open episodes' return and length at the end. Done
    after the rollout loop in a few batched ops, not as a running tally per step (each op
    in the sequential loop's body costs a dispatch per step on XLA:CPU).
    """
    t_len = int(reward.shape[0])
    t = tf.range(t_len)[:, None, None]
    last = tf.reduce_max(tf.where(done, t, -1), axis=0)  # the last closing step, -1: none
    closed_any = last >= 0
    closed = t <= last  # [T, S, N]: the step belongs to an episode the rollout closed
    zero = tf.zeros_like(reward)
    ret_closed = tf.where(closed_any, episode_return, 0.0) + tf.reduce_sum(
        tf.where(closed, reward, zero), axis=0)
    ret_open = tf.where(closed_any, 0.0, episode_return) + tf.reduce_sum(
        tf.where(closed, zero, reward), axis=0)
    len_closed = tf.where(closed_any, episode_length + last + 1, 0)
    len_open = tf.where(closed_any, t_len - 1 - last, episode_length + t_len)
    stats = {"return_sum": tf.reduce_sum(ret_closed, axis=1),
             "episodes": tf.reduce_sum(tf.cast(done, tf.float32), axis=[0, 2]),
             "length_sum": tf.reduce_sum(tf.cast(len_closed, tf.float32), axis=1)}
    return stats, ret_open, len_open


def by_agent(xs: list[tf.Tensor]) -> tf.Tensor:
    """Tensors with a leading agent axis ``S`` as one ``[S, P]`` tensor (``P``: their sizes
    after that axis, summed): one fused op for what would be one op per tensor."""
    return tf.concat([tf.reshape(x, [-1, int(np.prod(x.shape[1:]))]) for x in xs], axis=1)


def clip_by_agent_norm(grads: list[tf.Tensor], max_norm: float) -> tuple[list, tf.Tensor]:
    """Global-norm clipping done separately for each agent (leading axis S of every gradient)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(by_agent(grads)), axis=1))
    scale = tf.minimum(1.0, max_norm / tf.maximum(norm, 1e-12))
    return [g * tf.reshape(scale, [-1] + [1] * (g.shape.rank - 1)) for g in grads], norm


def adam(params, grads, m, v, step, lr, b1=0.9, b2=0.999, eps=1e-5):
    """One Adam step; returns ``(params, m, v)``. ``params`` and ``grads`` are lists of
    tensors with a leading agent axis S; the moments ``m`` and ``v`` are kept flat, ``[S, P]``
    in ``by_agent``'s order, so their update is one fused op each instead of one per tensor
    (XLA:CPU pays a dispatch per op: bench/README.md). Element-wise, so per-agent; ``lr`` is a
    scalar or one rate per agent ``[S]``."""
    step = tf.cast(step, tf.float32)
    lr = tf.convert_to_tensor(lr, tf.float32)
    c1, c2 = 1.0 - b1**step, 1.0 - b2**step
    g = by_agent(grads)
    new_m = b1 * m + (1.0 - b1) * g
    new_v = b2 * v + (1.0 - b2) * tf.square(g)
    delta = per_agent(lr, new_m) * (new_m / c1) / (tf.sqrt(new_v / c2) + eps)
    sizes = [int(np.prod(p.shape[1:])) for p in params]
    new_p = [p - tf.reshape(d, tf.shape(p)) for p, d in
             zip(params, tf.split(delta, sizes, axis=1))]
    return new_p, new_m, new_v


def per_agent(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A scalar as it is; a per-agent ``[S]`` tensor shaped to broadcast over ``like``'s axes
    after the leading agent axis."""
    return x if x.shape.rank == 0 else tf.reshape(x, [-1] + [1] * (like.shape.rank - 1))


SWEEPABLE = ("learning_rate_constant", "entropy_loss_coef", "clipping_coef", "gae_gamma",
             "gae_lambda")


def parse_sweep(text: str, num_seeds: int) -> dict[str, tuple[float, ...]]:
    """``"a=1|2;b=3|4"`` -> ``{"a": (1.0, 2.0), "b": (3.0, 4.0)}``: one value per agent for
    each swept hparam (names from ``SWEEPABLE``), checked."""
    out: dict[str, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in str(text or "").split(";"))):
        name, equals, values = part.partition("=")
        name = name.strip()
        if not equals:
            raise HParamsError(f"hparams_sweep entry {part!r}: expected name=value|value|...")
        if name not in SWEEPABLE:
            raise HParamsError(f"cannot sweep {name}; sweepable: {', '.join(SWEEPABLE)}")
        try:
            out[name] = tuple(float(v) for v in values.split("|"))
        except ValueError:
            raise HParamsError(f"hparams_sweep {name}={values}: values must be numbers") from None
        if len(out[name]) != num_seeds:
            raise HParamsError(f"hparams_sweep {name} has {len(out[name])} values for "
                               f"num_seeds={num_seeds}: give one per agent")
    return out


def replica_share(z: tf.Tensor, num_seeds: int, replicas: int, rid: tf.Tensor) -> tf.Tensor:
    """Replica ``rid``'s envs of an agent-major ``[S*N, ...]`` tensor: envs
    ``[rid*N/R, (rid+1)*N/R)`` of every agent, as ``[S*N/R, ...]`` (agent-major still).
    Concatenating the replicas' shares ``[S, N/R, ...]`` on axis 1 (an all-gather) undoes it."""
    per_agent = tf.reshape(z, [num_seeds, replicas, -1, *z.shape[1:]])
    return tf.reshape(tf.gather(per_agent, rid, axis=1), [-1, *z.shape[1:]])


def _assign(var: tf.Variable, t: tf.Tensor) -> None:
    var.assign(tf.cast(t, var.dtype))  # a no-op cast unless the state is stored widened


def _all_gather(ctx: tf.distribute.ReplicaContext, z: tf.Tensor, axis: int) -> tf.Tensor:
    """``ctx.all_gather`` for any dtype: collective gathers take floats and int32/int64 only,
    so bools and uint8 frames travel widened."""
    wide = z if z.dtype in GATHERABLE else tf.cast(z, tf.int32)
    return tf.cast(ctx.all_gather(wide, axis=axis), z.dtype)


# --------------------------------------------------------------------------------------------
# The agent.
# --------------------------------------------------------------------------------------------


class PPO:
    """A PPO agent bound to one ``BatchEnv``; all training state lives in ``tf.Variable``s.

    ``env.num_envs`` must equal ``hparams.num_envs * hparams.num_seeds``. ``total_env_steps`` (per
    agent) fixes the learning-rate annealing schedule.
    """

    def __init__(self, env: BatchEnv, hparams: Any, total_env_steps: int, seed: int = 0,
                 strategy: tf.distribute.Strategy | None = None, all_reduce: str = "auto"):
        """``all_reduce`` says where the gradient all-reduce sits when every agent's envs split
        over the strategy's replicas (whole agents do not; see the data-parallel section):
        ``"xla"`` (inside each replica's one XLA program: TPUs and GPUs), ``"host"`` (between
        programs: the form XLA:CPU runs), ``"auto"`` (xla where the strategy allows it). Forced
        on one replica, it runs that structure on one device (the CPU test of the GPU/TPU
        program)."""
        self.env, self.hp, self.seed = env, hparams, int(seed)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.num_seeds = int(getattr(hparams, "num_seeds", 1))
        self.num_envs = int(hparams.num_envs)
        if env.num_envs != self.num_envs * self.num_seeds:
            raise HParamsError(
                f"env has {env.num_envs} envs, PPO needs num_envs*num_seeds = "
                f"{self.num_envs}*{self.num_seeds}"
            )
        self.steps_per_iteration = int(hparams.epoch_length) * self.num_envs
        self.num_iterations = max(1, math.ceil(int(total_env_steps) / self.steps_per_iteration))
        batch = self.steps_per_iteration
        if batch % int(hparams.num_minibatches):
            raise HParamsError(
                f"epoch_length*num_envs={batch} is not divisible by num_minibatches="
                f"{hparams.num_minibatches}"
            )
        # several replicas: whole agents per replica where the seed axis splits, else a share
        # of every agent's envs (see the data-parallel section)
        self.shard_seeds = self.replicas > 1 and self.num_seeds % self.replicas == 0
        if self.replicas > 1 and not env.jit_compatible:
            raise HParamsError(f"{env.name} steps on the host and cannot be split over replicas;"
                               " use --distribute=none")
        if all_reduce not in ("auto", "xla", "host"):
            raise HParamsError(f"all_reduce={all_reduce!r}: choose auto, xla or host")
        self.network = str(getattr(hparams, "network", "mlp"))
        if self.network not in NETWORKS:
            raise HParamsError(f"network={self.network!r}: choose one of {', '.join(NETWORKS)}")
        jit = bool(getattr(hparams, "jit", True))
        if jit and self.network != "mlp" and not accelerator() and not bool(
                getattr(hparams, "xla_convs_on_cpu", False)):
            jit = False  # XLA:CPU's conv gradients: ~6x slower than TF's kernels (bench/README)
        self.jit = jit
        self.split = None  # where the all-reduce of agents split over replicas sits
        if self.shard_seeds and all_reduce != "auto":
            raise HParamsError(f"all_reduce={all_reduce!r} is for agents split over replicas; "
                               f"here each replica holds whole agents: leave it auto")
        if not self.shard_seeds and (all_reduce != "auto" or self.replicas > 1):
            in_xla = jit and collectives_in_xla(self.strategy)
            self.split = all_reduce if all_reduce != "auto" else ("xla" if in_xla else "host")
            if self.split == "xla" and self.replicas > 1 and not in_xla:
                raise HParamsError("all_reduce='xla' needs jit and collectives inside XLA (a TPU, "
                                   "or GPUs under MirroredStrategy); here use all_reduce='host'")
            if not env.jit_compatible:
                raise HParamsError(f"{env.name} steps on the host: all_reduce={all_reduce!r} "
                                   "needs an in-graph env")
            self.local_env = self._check_shardable(env)
        self.discrete = isinstance(env.action_spec, Discrete)
        self.share_torso = bool(getattr(hparams, "share_torso", True))
        self._act_calls = 0
        self.sweep = parse_sweep(getattr(hparams, "hparams_sweep", ""), self.num_seeds)
        self.obs_dim = int(np.prod(env.observation_spec.shape))
        self.act_dim = env.action_spec.n if self.discrete else int(np.prod(env.action_spec.shape))

        root = make_key(self.seed)
        _, env_key, loop_key = tf.unstack(split(root, 3))  # (first key: kept for stable streams)
        params = self._init_params()
        env_state, obs = env.reset(env_key)
        flat = tf.nest.flatten(params)
        n_total = env.num_envs
        carry = {
            "params": params,
            "m": tf.zeros_like(by_agent(flat)),  # Adam's moments, flat: see adam()
            "v": tf.zeros_like(by_agent(flat)),
            "env_state": env_state,
            "obs": obs,
            "key": loop_key,
            "episode_return": tf.zeros([n_total]),
            "episode_length": tf.zeros([n_total], tf.int32),
            "iteration": tf.constant(0, tf.int64),
            "updates": tf.constant(0, tf.int64),
        }
        self._dtypes = tf.nest.map_structure(lambda t: t.dtype, carry)
        # Workers (and TPU hosts) broadcast and gather state with collectives, which take floats
        # and int32/int64 only: there, uint8 frames and bools are stored widened to int32.
        widen = self.replicas > 1 and getattr(self.strategy, "cluster_resolver", None) is not None
        store = lambda t: t if not widen or t.dtype in GATHERABLE else tf.cast(t, tf.int32)
        with self.strategy.scope():  # mirrored across replicas; one copy on one device
            self.state = tf.nest.map_structure(
                lambda t: tf.Variable(store(t), trainable=False), carry)
        # autograph=False: the graph code is explicit tf.while_loop/tf.cond already, and
        # autograph's source-to-source conversion was ~80% of the trace (5 of 6 s on CartPole)
        self._train = tf.function(self._train_graph, jit_compile=jit and env.jit_compatible,
                                  autograph=False)
        if jit and not env.jit_compatible:  # host-stepped env: compile the update part only
            self._update = tf.function(self._update, jit_compile=True, autograph=False)
        self._act = tf.function(self._act_graph, jit_compile=jit, autograph=False)
        self._learn = None  # traced on the first learn call
        if self.shard_seeds:  # one XLA program per replica per call, as on one device
            self._local = copy.copy(self)
            self._local.num_seeds = self.num_seeds // self.replicas
            self._local.env = env.with_num_envs(env.num_envs // self.replicas)
            self._seed_shard = tf.function(self._seed_shard_graph, jit_compile=jit,
                                           autograph=False)
            self._seed_call = tf.function(self._seed_call_graph, autograph=False)
        elif self.split == "xla":  # the all-reduce inside each replica's one XLA program
            self._split_replica = tf.function(self._split_replica_graph, jit_compile=jit,
                                              autograph=False)
            self._split_call = tf.function(self._split_call_graph, autograph=False)
        elif self.split == "host":  # XLA per replica; the all-reduce and loop around it outside
            self._shard_prepare = tf.function(self._shard_prepare_graph, jit_compile=jit,
                                              autograph=False)
            self._shard_grads = tf.function(self._grads, jit_compile=jit, autograph=False)
            self._shard_apply = tf.function(self._apply, jit_compile=jit, autograph=False)
            self._replicated_iteration = tf.function(self._replicated_iteration_graph,
                                                     autograph=False)

    # ---- parameters ----------------------------------------------------------------------
    def _init_params(self) -> Params:
        hp, s = self.hp, self.num_seeds
        params: Params = {}
        width = self.obs_dim
        if self.network != "mlp":
            shape = tuple(self.env.observation_spec.shape)
            for name in ("torso",) if self.share_torso else ("pi_torso", "v_torso"):
                params[name], width = init_torso(self.network, shape, hp, s,
                                                 self.seed + 104729 * (len(params) + 1))
        params["pi"] = init_mlp([width, *hp.policy_layers, self.act_dim], 0.01, s, self.seed)
        params["v"] = init_mlp([width, *hp.value_layers, 1], 1.0, s, self.seed + 7919)
        if not self.discrete:
            params["log_std"] = tf.fill([s, self.act_dim], float(hp.init_logstd))
        return params

    @property
    def params(self) -> Params:
        return tf.nest.map_structure(lambda v: v.read_value(), self.state["params"])

    @property
    def iteration(self) -> int:
        return int(self.state["iteration"].numpy())

    @property
    def env_steps(self) -> int:
        """Env steps taken so far by each agent."""
        return self.iteration * self.steps_per_iteration

    def restart_envs(self) -> None:
        """Resets the envs and the episode accumulators, keeping everything else.

        After restoring a checkpoint of a host-stepped env (the gymnasium adapter), the restored
        observations no longer match the host envs, which cannot be rewound; this starts fresh
        episodes from the restored RNG key instead.
        """
        key, sub = tf.unstack(split(self.state["key"].read_value()))
        env_state, obs = self.env.reset(sub)
        tf.nest.map_structure(_assign, self.state["env_state"], env_state)
        _assign(self.state["obs"], obs)
        self.state["key"].assign(key)
        self.state["episode_return"].assign(tf.zeros_like(self.state["episode_return"]))
        self.state["episode_length"].assign(tf.zeros_like(self.state["episode_length"]))

    def _read_state(self) -> dict:
        """The carry held in the state variables, in the carry's own dtypes."""
        return tf.nest.map_structure(lambda v, d: tf.cast(v.read_value(), d), self.state,
                                     self._dtypes)

    def variables(self) -> list[tf.Variable]:
        """Everything a checkpoint must hold to resume bit-for-bit."""
        return tf.nest.flatten(self.state)

    # ---- policy and value heads ------------------------------------------------------------
    def _features(self, obs: tf.Tensor, num_seeds: int | None = None) -> tf.Tensor:
        """``obs [S*N or S, B, ...]`` (uint8 frames or floats) -> scaled float32 ``[S, B, D]``
        for an MLP, ``[S, B, H, W, C]`` for a conv torso (the scaling happens in the graph)."""
        x = tf.cast(obs, tf.float32) * float(getattr(self.hp, "obs_scale", 1.0))
        shape = [self.obs_dim] if self.network == "mlp" else self.env.observation_spec.shape
        return tf.reshape(x, [num_seeds or self.num_seeds, -1, *shape])

    def _torso(self, params: Params, head: str, x: tf.Tensor) -> tf.Tensor:
        if self.network == "mlp":
            return x
        name = "torso" if self.share_torso else f"{head}_torso"
        return torso(self.network, params[name], x, self.hp)

    def _policy(self, params: Params, x: tf.Tensor) -> tf.Tensor:
        return mlp(params["pi"], self._torso(params, "pi", x), self.hp.activation)

    def _value(self, params: Params, x: tf.Tensor) -> tf.Tensor:
        return mlp(params["v"], self._torso(params, "v", x), self.hp.activation)[..., 0]

    def _heads(self, params: Params, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Policy outputs and values of the same features (a shared torso runs once)."""
        if self.network != "mlp" and self.share_torso:
            z = self._torso(params, "pi", x)
            act = self.hp.activation
            return mlp(params["pi"], z, act), mlp(params["v"], z, act)[..., 0]
        return self._policy(params, x), self._value(params, x)

    def _sample(self, params: Params, out: tf.Tensor, key: tf.Tensor):
        """Samples actions from policy outputs; returns ``(action, log_prob)``."""
        if self.discrete:
            action = categorical_sample(out, key)
            return action, categorical_log_prob(out, action)
        log_std = params["log_std"][:, None, :]
        action = out + tf.exp(log_std) * normal(key, tf.shape(out))
        return action, gaussian_log_prob(out, log_std, action)

    def _log_prob_entropy(self, params: Params, out: tf.Tensor, action: tf.Tensor):
        if self.discrete:
            return categorical_log_prob(out, action), categorical_entropy(out)
        log_std = params["log_std"][:, None, :]
        ent = tf.broadcast_to(gaussian_entropy(params["log_std"])[:, None], tf.shape(out)[:-1])
        return gaussian_log_prob(out, log_std, action), ent

    def _env_action(self, action: tf.Tensor, env: BatchEnv) -> tf.Tensor:
        """``[S, N, ...]`` agent actions -> ``[S*N, ...]`` env actions (clipped to the Box)."""
        spec = env.action_spec
        action = tf.reshape(action, [env.num_envs, *spec.shape])
        if isinstance(spec, Box):
            low, high = spec.bounds()
            action = tf.clip_by_value(action, low, high)
        return action

    # ---- rollout ---------------------------------------------------------------------------
    def _rollout(self, c: dict, env: BatchEnv) -> tuple[dict, dict, tf.Tensor, dict]:
        """Steps ``env`` (``self.env``, or a replica's share of it) ``epoch_length`` times;
        returns the carry and a ``[T, S, N]`` batch.

        Only the policy runs inside the sequential loop; the critic is evaluated afterwards on
        every stored observation (and every ``final_obs``) in one batched pass.
        """
        hp, s = self.hp, self.num_seeds
        n = env.num_envs // s
        t_len = int(hp.epoch_length)
        params = c["params"]
        spec = env.action_spec
        act_shape = [s, n] + ([] if self.discrete else list(spec.shape))
        obs_shape = [s, n, *env.observation_spec.shape]
        buf = {
            "obs": tf.TensorArray(env.observation_spec.dtype, t_len, element_shape=obs_shape),
            "final_obs": tf.TensorArray(env.observation_spec.dtype, t_len,
                                        element_shape=obs_shape),
            "action": tf.TensorArray(tf.int32 if self.discrete else tf.float32, t_len,
                                     element_shape=act_shape),
            # log_prob, reward, terminated, truncated: one write per step instead of four
            "scalars": tf.TensorArray(tf.float32, t_len, element_shape=[s, n, 4]),
        }
        per_agent = lambda z: tf.reshape(z, [s, n, *z.shape[1:]])

        def body(t, env_state, obs, key, buf):
            k_act, k_env, key = tf.unstack(split(key, 3))
            action, log_prob = self._sample(params, self._policy(params, self._features(obs)),
                                            k_act)
            env_state, step = env.step(env_state, self._env_action(action, env), k_env)
            scalars = tf.stack([log_prob, per_agent(step.reward),
                                per_agent(tf.cast(step.terminated, tf.float32)),
                                per_agent(tf.cast(step.truncated, tf.float32))], axis=-1)
            buf = {
                "obs": buf["obs"].write(t, per_agent(obs)),
                "final_obs": buf["final_obs"].write(t, per_agent(step.final_obs)),
                "action": buf["action"].write(t, action),
                "scalars": buf["scalars"].write(t, scalars),
            }
            return t + 1, env_state, step.obs, key, buf

        out = tf.while_loop(
            lambda t, *_: t < t_len, body, (0, c["env_state"], c["obs"], c["key"], buf),
            maximum_iterations=t_len, parallel_iterations=1)
        _, env_state, obs, key, buf = out
        batch = {k: v.stack() for k, v in buf.items()}
        log_prob, reward, terminated, truncated = tf.unstack(batch.pop("scalars"), axis=-1)
        batch.update(log_prob=log_prob, reward=reward * float(hp.reward_scale),
                     terminated=terminated > 0.5, truncated=truncated > 0.5)
        stats, ep_ret, ep_len = episode_stats(
            reward, tf.logical_or(batch["terminated"], batch["truncated"]),
            per_agent(c["episode_return"]), per_agent(c["episode_length"]))
        # The critic, once for all T*N observations, the last one and the T*N final ones.
        agent_major = lambda z: tf.reshape(tf.transpose(z, [1, 0, 2, *range(3, z.shape.rank)]),
                                           [s, t_len * n, *z.shape[3:]])
        x = tf.concat([self._features(agent_major(batch["obs"])), self._features(obs),
                       self._features(agent_major(batch["final_obs"]))], axis=1)
        v = self._value(params, x)  # [S, 2*T*N + N]
        time_major = lambda z: tf.transpose(tf.reshape(z, [s, t_len, n]), [1, 0, 2])
        batch["value"] = time_major(v[:, :t_len * n])
        last_value = v[:, t_len * n:t_len * n + n]
        batch["final_value"] = time_major(v[:, t_len * n + n:])
        c = dict(c, env_state=env_state, obs=obs, key=key,
                 episode_return=tf.reshape(ep_ret, [-1]), episode_length=tf.reshape(ep_len, [-1]))
        return c, batch, last_value, stats

    def _hp(self, name: str, rank: int = 1) -> float | tf.Tensor:
        """Hparam ``name``: a float, or where swept its per-agent values ``[S, 1, ...]`` (of
        ``rank`` axes) to broadcast over agent-major tensors."""
        if name not in self.sweep:
            return float(getattr(self.hp, name))
        values = tf.convert_to_tensor(self.sweep[name], tf.float32)
        return tf.reshape(values, [-1] + [1] * (rank - 1))

    # ---- update ----------------------------------------------------------------------------
    def _prepare(self, c: dict, env: BatchEnv) -> tuple[dict, dict, tf.Tensor, dict]:
        """Rollout on ``env``, GAE and the annealed rate: all an update needs but its order.

        Returns ``(carry, batch, lr, rollout stats)``, the batch agent-major ``[S, T*N, ...]``.
        """
        hp, s = self.hp, self.num_seeds
        c, batch, last_value, stats = self._rollout(c, env)
        adv, target = gae(batch["reward"], batch["value"], last_value, batch["terminated"],
                          batch["truncated"], batch["final_value"], self._hp("gae_gamma", 2),
                          self._hp("gae_lambda", 2))  # [S, 1] over [T, S, N]
        frac = 1.0
        if bool(hp.learning_rate_decay):
            frac = 1.0 - tf.cast(c["iteration"], tf.float32) / float(self.num_iterations)
            frac = tf.maximum(frac, 0.0)
        lr = self._hp("learning_rate_constant") * frac
        batch = {k: batch[k] for k in ("obs", "action", "log_prob", "value")}
        batch.update(advantage=adv, target=target)
        n_batch = int(hp.epoch_length) * (env.num_envs // s)
        # [T, S, N, ...] -> [S, T*N, ...]
        flat = {
            k: tf.reshape(tf.experimental.numpy.moveaxis(v, 1, 0), [s, n_batch, *v.shape[3:]])
            for k, v in batch.items()
        }
        return c, flat, lr, stats

    def _shuffle(self, c: dict, n_batch: int) -> tuple[dict, tf.Tensor]:
        """The minibatch order ``[E*M, S, mb]`` of an update (update i takes minibatch i; static
        shapes keep XLA on its fast path): one shuffle per epoch per agent. Always compiled
        with the update (TF's and XLA's random kernels draw different numbers)."""
        s, n_mb, epochs = self.num_seeds, int(self.hp.num_minibatches), int(
            self.hp.optimization_epochs)
        mb = n_batch // n_mb  # a remainder (only in learn's rollouts) is left out each epoch
        key, perm_key = tf.unstack(split(c["key"]))
        perms = tf.argsort(uniform(perm_key, [epochs, s, n_batch]), axis=-1)[..., :n_mb * mb]
        perms = tf.reshape(tf.transpose(tf.reshape(perms, [-1, s, n_mb, mb]),
                                        [0, 2, 1, 3]), [epochs * n_mb, s, mb])
        return dict(c, key=key), perms

    def _grads(self, params: list, flat: dict, idx: tf.Tensor) -> tuple[list, dict]:
        """Gradients of the PPO loss on minibatch ``idx [S, mb]`` of ``flat``, and its stats."""
        hp = self.hp
        mbatch = {k: tf.gather(x, idx, batch_dims=1) for k, x in flat.items()}
        with tf.GradientTape() as tape:
            tape.watch(params)
            p = tf.nest.pack_sequence_as(self.state["params"], params)
            out, value = self._heads(p, self._features(mbatch["obs"]))
            log_prob, entropy = self._log_prob_entropy(p, out, mbatch["action"])
            loss, stats = ppo_loss(
                log_prob, mbatch["log_prob"], mbatch["advantage"], value,
                mbatch["value"], mbatch["target"], entropy, self._hp("clipping_coef", 2),
                float(hp.value_loss_coef), self._hp("entropy_loss_coef"),
                bool(hp.clip_value_loss), bool(hp.normalize_advantages))
            total = tf.reduce_sum(loss)  # agents are independent: sum keeps grads separate
        return tape.gradient(total, params), stats

    def _apply(self, params: list, grads: list, m: list, v: list, updates: tf.Tensor,
               lr: tf.Tensor) -> tuple[list, list, list, tf.Tensor, tf.Tensor]:
        """Per-agent gradient clipping and one Adam step; returns the new state and the norm."""
        grads, norm = clip_by_agent_norm(grads, float(self.hp.clip_grad_norm))
        updates = updates + 1
        params, m, v = adam(params, grads, m, v, updates, lr)
        return params, m, v, updates, norm

    def _update(self, c: dict, flat: dict, lr: tf.Tensor) -> tuple[dict, dict]:
        """``optimization_epochs`` x ``num_minibatches`` Adam steps on the rollout batch."""
        c, perms = self._shuffle(c, int(flat["obs"].shape[1]))
        return self._steps(c, flat, perms, lr)

    def _steps(self, c: dict, flat: dict, perms: tf.Tensor, lr: tf.Tensor,
               mean=None) -> tuple[dict, dict]:
        """The Adam steps of an update, minibatch i from ``perms[i]``; ``mean`` (an all-reduce
        across replicas) averages each minibatch's gradients and stats before they apply."""
        n_updates = int(perms.shape[0])

        def body(i, params, m, v, updates, acc):
            grads, stats = self._grads(params, flat, perms[i])
            if mean is not None:
                grads, stats = mean((grads, stats))
            params, m, v, updates, stats["grad_norm"] = self._apply(params, grads, m, v,
                                                                    updates, lr)
            acc = acc + tf.stack([stats[k] for k in UPDATE_METRICS])  # one op, not six
            return i + 1, params, m, v, updates, acc

        loop = (0, tf.nest.flatten(c["params"]), c["m"], c["v"], c["updates"],
                tf.zeros([len(UPDATE_METRICS), self.num_seeds]))
        _, params, m, v, updates, acc = tf.while_loop(
            lambda i, *_: i < n_updates, body, loop, maximum_iterations=n_updates,
            parallel_iterations=1)
        c = dict(c, params=tf.nest.pack_sequence_as(c["params"], params), m=m, v=v,
                 updates=updates)
        return c, dict(zip(UPDATE_METRICS, tf.unstack(acc / n_updates)))

    def _iteration(self, c: dict) -> tuple[dict, dict]:
        """One PPO iteration: rollout, GAE, update. Returns the new carry and ``[S]`` metrics."""
        c, flat, lr, stats = self._prepare(c, self.env)
        c, upd = self._update(c, flat, lr)
        c["iteration"] = c["iteration"] + 1
        stats.update(upd)
        return c, stats

    def _train_graph(self, iterations: tf.Tensor) -> tf.Tensor:
        """Runs ``iterations`` (<= ``iterations_per_call``) PPO iterations from the variables'
        state, stores the result, and returns the metrics as ``[iterations_per_call, M, S]``.

        The iteration count is a runtime value under a static bound, so a shorter last call
        reuses the compiled program instead of compiling another. (Agents split over replicas
        with ``all_reduce="host"`` run one call per iteration: see the data-parallel section.)
        """
        c = tf.nest.map_structure(lambda v: v.read_value(), self.state)
        c, buf = self._iterations(c, iterations)
        tf.nest.map_structure(lambda var, t: var.assign(t), self.state, c)
        return buf

    def _iterations(self, c: dict, iterations: tf.Tensor) -> tuple[dict, tf.Tensor]:
        """``iterations`` PPO iterations from carry ``c``: the new carry and the metrics."""
        rows = int(self.hp.iterations_per_call)
        buf = tf.zeros([rows, len(METRICS), self.num_seeds])

        def body(k, c, buf):
            c, stats = self._iteration(c)
            row = tf.stack([stats[n] for n in METRICS])
            return k + 1, c, tf.tensor_scatter_nd_update(buf, [[k]], row[None])

        _, c, buf = tf.while_loop(lambda k, *_: k < iterations, body, (0, c, buf),
                                  maximum_iterations=rows, parallel_iterations=1)
        return c, buf

    def train(self, iterations: int | None = None) -> dict[str, np.ndarray]:
        """Runs PPO iterations in compiled calls of up to ``iterations_per_call`` each (one per
        iteration where agents' envs split over replicas with the all-reduce between
        programs, ``all_reduce="host"``); returns the metrics as ``[iterations, S]`` arrays.

        ``return_mean`` is the mean undiscounted return of episodes that ended during each
        iteration (NaN where none ended).
        """
        per_call = int(self.hp.iterations_per_call)
        todo = per_call if iterations is None else int(iterations)
        chunks = []
        if self.split == "host":  # one call per iteration (the minibatch loop is host-driven)
            chunks = [self._replicated_iteration().numpy()[None] for _ in range(todo)]
            todo = 0
        call = {None: self._train, "xla": getattr(self, "_split_call", None)}.get(self.split)
        call = self._seed_call if self.shard_seeds else call
        while todo > 0:
            k = min(todo, per_call)
            chunks.append(call(tf.constant(k)).numpy()[:k])
            todo -= k
        buf = np.concatenate(chunks)
        out = {n: buf[:, i] for i, n in enumerate(METRICS)}
        with np.errstate(invalid="ignore", divide="ignore"):
            out["return_mean"] = out["return_sum"] / out["episodes"]
            out["length_mean"] = out["length_sum"] / out["episodes"]
        return out

    # ---- learning from a rollout stepped elsewhere -----------------------------------------
    def learn(self, rollout: dict[str, Any], learning_rate: float) -> dict[str, float]:
        """One PPO update (``optimization_epochs`` x ``num_minibatches`` Adam steps) on a
        rollout that this agent's current policy collected outside :meth:`train`: t2t's
        ``train_agent_real_env``, where the SimPLe loop's agent keeps learning on the real env
        while recording it.

        ``rollout`` holds time-major numpy arrays of one batch of envs: ``obs [T, B, ...]`` (what
        the policy saw), ``action [T, B, ...]``, ``reward``, ``terminated``, ``truncated``
        ``[T, B]``, ``final_obs [T, B, ...]`` (the real last observation where a step ended an
        episode) and ``last_obs [B, ...]`` (the observation after the last step, bootstrapped
        from: a rollout cut anywhere is fine). The behaviour policy's log-probabilities and
        values are recomputed here, so call it before the policy changes (on-policy). ``T*B``
        need not divide by ``num_minibatches``: each epoch's shuffle leaves the remainder out.
        The iteration counter (imagination's schedule) and the envs of :meth:`train` are left
        alone; the Adam state and the key move on. Returns the update's mean metrics."""
        if self.num_seeds != 1 or self.replicas != 1:
            raise HParamsError(f"learn is for one agent on one device; this one has "
                               f"num_seeds={self.num_seeds}, {self.replicas} replicas")
        if self._learn is None:
            self._learn = tf.function(self._learn_graph, jit_compile=self.jit, autograph=False)
        names = ("obs", "action", "reward", "terminated", "truncated", "final_obs", "last_obs")
        size = int(np.prod(np.shape(rollout["reward"])))
        if size < int(self.hp.num_minibatches):
            raise HParamsError(f"a rollout of {size} steps is smaller than num_minibatches="
                               f"{self.hp.num_minibatches}")
        args = {k: tf.convert_to_tensor(rollout[k]) for k in names}
        stats = self._learn(args, tf.constant(float(learning_rate), tf.float32))
        return {k: float(v[0]) for k, v in stats.items()}

    def _learn_graph(self, r: dict, lr: tf.Tensor) -> dict:
        c = self._read_state()
        params = c["params"]
        t_len, n = int(r["reward"].shape[0]), int(r["reward"].shape[1])
        flat_obs = lambda z: self._features(tf.reshape(z, [-1, *z.shape[2:]]))  # [1, T*B, ...]
        x = tf.concat([flat_obs(r["obs"]), self._features(r["last_obs"]),
                       flat_obs(r["final_obs"])], axis=1)
        out, v = self._heads(params, x)
        time_major = lambda z: tf.reshape(z, [t_len, 1, n])
        value = time_major(v[:, :t_len * n])
        final_value = time_major(v[:, t_len * n + n:])
        action = tf.reshape(r["action"], [1, t_len * n, *r["action"].shape[2:]])
        if self.discrete:
            action = tf.cast(action, tf.int32)
        log_prob, _ = self._log_prob_entropy(params, out[:, :t_len * n], action)
        reward = tf.cast(r["reward"], tf.float32)[:, None] * float(self.hp.reward_scale)
        adv, target = gae(reward, value, v[:, t_len * n:t_len * n + n],
                          tf.cast(r["terminated"], tf.bool)[:, None],
                          tf.cast(r["truncated"], tf.bool)[:, None], final_value,
                          self._hp("gae_gamma", 2), self._hp("gae_lambda", 2))
        agent_major = lambda z: tf.reshape(z, [1, t_len * n])
        flat = {"obs": tf.reshape(r["obs"], [1, t_len * n, *r["obs"].shape[2:]]),
                "action": action, "log_prob": log_prob, "value": agent_major(value),
                "advantage": agent_major(adv), "target": agent_major(target)}
        c, perms = self._shuffle(c, t_len * n)
        c, stats = self._steps(c, flat, perms, lr)
        for name in ("params", "m", "v", "key", "updates"):
            tf.nest.map_structure(_assign, self.state[name], c[name])
        return stats

    # ---- data parallel across replicas (tf.distribute) --------------------------------------
    # Where the seed axis does not split over the R replicas (num_seeds % R), every replica
    # holds all S agents and a 1/R share of each agent's envs. The state variables
    # are mirrored and hold the whole run (all envs), so a checkpoint is the same as one
    # device's and resumes on any replica count. Per iteration each replica runs its rollout,
    # GAE and shuffle as one XLA program on its share; each minibatch gradient is its own XLA
    # program, averaged across replicas (an all-reduce, per agent, between the programs:
    # XLA:CPU cannot hold collectives) and applied identically everywhere; the new env states
    # are gathered back (``all_reduce="host"``; ``"xla"`` below runs the same pieces as one
    # program). Minibatches are drawn within each replica's share and advantages
    # normalised per share, so a run matches one device statistically, not bit for bit.

    def _check_shardable(self, env: BatchEnv) -> BatchEnv:
        """The env of one replica's share; a one-line error where the env cannot be split."""
        r = self.replicas
        if self.num_envs % r:
            raise HParamsError(f"num_envs={self.num_envs} does not split over {r} replicas: "
                               f"use a multiple of {r}")
        if (int(self.hp.epoch_length) * self.num_envs // r) % int(self.hp.num_minibatches):
            raise HParamsError(f"epoch_length*num_envs/{r} replicas is not divisible by "
                               f"num_minibatches={self.hp.num_minibatches}")
        return env.with_num_envs(env.num_envs // r)

    def _shard_prepare_graph(self, c: dict, rid: tf.Tensor) -> dict:
        """Replica ``rid``'s rollout, GAE and shuffle on its share of the envs (XLA)."""
        s, r = self.num_seeds, self.replicas
        key, sub = tf.unstack(split(c["key"]))
        share = lambda z: replica_share(z, s, r, rid)
        parts = ("env_state", "obs", "episode_return", "episode_length")
        local = dict(c, key=tf.random.experimental.stateless_fold_in(sub, rid),
                     **{k: tf.nest.map_structure(share, c[k]) for k in parts})
        local, flat, lr, stats = self._prepare(local, self.local_env)
        local, perms = self._shuffle(local, int(flat["obs"].shape[1]))
        return {"share": {k: local[k] for k in parts}, "key": key, "flat": flat,
                "perms": perms, "lr": lr, "stats": stats}

    def _replica_prepare(self) -> dict:
        c = self._read_state()
        return self._shard_prepare(c, tf.distribute.get_replica_context().replica_id_in_sync_group)

    def _replica_update(self, flat: dict, perms: tf.Tensor, lr: tf.Tensor, i: tf.Tensor) -> dict:
        """Minibatch ``i``: local gradients, averaged across replicas, applied on each."""
        ctx = tf.distribute.get_replica_context()
        read = lambda vs: [v.read_value() for v in vs]
        param_vars = tf.nest.flatten(self.state["params"])
        params, m, v = read(param_vars), self.state["m"].read_value(), self.state["v"].read_value()
        grads, stats = self._shard_grads(params, flat, perms[i])
        grads, stats = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, (grads, stats))
        params, m, v, updates, stats["grad_norm"] = self._shard_apply(
            params, grads, m, v, self.state["updates"].read_value(), lr)
        for var, t in zip([*param_vars, self.state["m"], self.state["v"]], [*params, m, v]):
            var.assign(t)
        self.state["updates"].assign(updates)
        return stats

    def _gather_shares(self, ctx: tf.distribute.ReplicaContext, share: dict) -> dict:
        """Every replica's env shares ``[S*N/R, ...]`` -> the whole ``[S*N, ...]``, everywhere
        (undoes ``replica_share``). An all-reduce sum of each share placed in its replica's
        block of zeros, not an all-gather: all-reduces are the collective every XLA backend
        holds, and x + 0 is x exactly (each value has one replica's block; the rest are zeros)."""
        s, r = self.num_seeds, self.replicas
        slot = tf.one_hot(ctx.replica_id_in_sync_group, r, dtype=tf.int32)

        def gather(z):
            wide = z if z.dtype in GATHERABLE else tf.cast(z, tf.int32)
            parts = tf.reshape(wide, [1, s, -1, *z.shape[1:]])
            mask = tf.reshape(tf.cast(slot, tf.bool), [r, 1, 1] + [1] * (z.shape.rank - 1))
            mine = tf.where(mask, parts, tf.zeros_like(parts))  # (no 0 * inf = NaN elsewhere)
            blocks = ctx.all_reduce(tf.distribute.ReduceOp.SUM, mine)  # [R, S, N/R, ...]
            whole = tf.experimental.numpy.moveaxis(blocks, 0, 1)  # [S, R, N/R, ...]
            return tf.cast(tf.reshape(whole, [-1, *z.shape[1:]]), z.dtype)

        return tf.nest.map_structure(gather, share)

    def _replica_finish(self, share: dict, key: tf.Tensor, stats: dict) -> dict:
        """Gathers every replica's envs back into the mirrored state; sums the episode stats."""
        ctx = tf.distribute.get_replica_context()
        whole = self._gather_shares(ctx, share)
        for k, part in whole.items():
            tf.nest.map_structure(_assign, self.state[k], part)
        self.state["key"].assign(key)
        self.state["iteration"].assign_add(1)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)

    def _replicated_iteration_graph(self) -> tf.Tensor:
        """One PPO iteration across the strategy's replicas; returns metrics ``[M, S]``."""
        strategy = self.strategy
        first = lambda x: tf.nest.map_structure(
            lambda t: strategy.experimental_local_results(t)[0], x)
        prep = strategy.run(self._replica_prepare)
        n_updates = int(self.hp.optimization_epochs) * int(self.hp.num_minibatches)

        def body(i, acc):
            stats = first(strategy.run(self._replica_update,
                                       (prep["flat"], prep["perms"], prep["lr"], i)))
            return i + 1, [a + stats[k] for a, k in zip(acc, UPDATE_METRICS)]

        zeros = [tf.zeros([self.num_seeds]) for _ in UPDATE_METRICS]
        _, acc = tf.while_loop(lambda i, _: i < n_updates, body, (0, zeros),
                               maximum_iterations=n_updates, parallel_iterations=1)
        stats = first(strategy.run(self._replica_finish,
                                   (prep["share"], prep["key"], prep["stats"])))
        return tf.stack([stats[k] for k in METRICS[:3]] + [a / n_updates for a in acc])

    # With ``all_reduce="xla"`` (TPUs; MirroredStrategy over GPUs, where TF keeps collectives inside
    # XLA) the same pieces -- share, rollout, GAE, shuffle, per-minibatch gradient all-reduced
    # per agent, clip + Adam, gather -- run as one XLA program per replica per call of
    # ``iterations_per_call`` iterations, as on one device.

    def _split_iteration(self, c: dict, ctx: tf.distribute.ReplicaContext
                         ) -> tuple[dict, tf.Tensor]:
        """One iteration on this replica's share, collectives inside: the new (whole) carry
        and the metrics row ``[M, S]``, the same on every replica."""
        p = self._shard_prepare_graph(c, ctx.replica_id_in_sync_group)
        mean = lambda x: ctx.all_reduce(tf.distribute.ReduceOp.MEAN, x)
        c, upd = self._steps(c, p["flat"], p["perms"], p["lr"], mean)
        stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, p["stats"])
        c = dict(c, **self._gather_shares(ctx, p["share"]), key=p["key"],
                 iteration=c["iteration"] + 1)
        return c, tf.stack([stats[k] for k in METRICS[:3]] + [upd[k] for k in UPDATE_METRICS])

    def _split_replica_graph(self, iterations: tf.Tensor) -> tf.Tensor:
        """``iterations`` iterations of this replica (one XLA program): stores the carry,
        returns the metrics ``[iterations_per_call, M, S]``."""
        ctx = tf.distribute.get_replica_context()
        rows = int(self.hp.iterations_per_call)

        def body(k, c, buf):
            c, row = self._split_iteration(c, ctx)
            return k + 1, c, tf.tensor_scatter_nd_update(buf, [[k]], row[None])

        buf = tf.zeros([rows, len(METRICS), self.num_seeds])
        _, c, buf = tf.while_loop(lambda k, *_: k < iterations, body,
                                  (0, self._read_state(), buf), maximum_iterations=rows,
                                  parallel_iterations=1)
        tf.nest.map_structure(_assign, self.state, c)
        return buf

    def _split_call_graph(self, iterations: tf.Tensor) -> tf.Tensor:
        out = self.strategy.run(self._split_replica, (iterations,))
        return self.strategy.experimental_local_results(out)[0]

    # Where the seed axis splits (num_seeds a multiple of R), each replica trains whole agents:
    # S/R agents with all their envs, independent of the others, so a call of
    # ``iterations_per_call`` iterations is one XLA program per replica with no collective in
    # it; the agents' slices are gathered back after it.

    def _seed_shard_graph(self, c: dict, rid: tf.Tensor, iterations: tf.Tensor
                          ) -> tuple[dict, tf.Tensor]:
        """Replica ``rid``'s agents trained ``iterations`` iterations (XLA): their carry and
        metrics ``[rows, M, S/R]``."""
        r, local = self.replicas, copy.copy(self._local)
        agents = lambda z: replica_share(z, 1, r, rid)  # block rid of R along the first axis
        local.sweep = {k: agents(tf.constant(v, tf.float32)) for k, v in self.sweep.items()}
        key, sub = tf.unstack(split(c["key"]))
        mine = dict(c, key=tf.random.experimental.stateless_fold_in(sub, rid),
                    **{k: tf.nest.map_structure(agents, c[k]) for k in SEED_PARTS})
        mine, buf = local._iterations(mine, iterations)
        return dict(mine, key=key), buf

    def _replica_seed_call(self, iterations: tf.Tensor) -> tf.Tensor:
        ctx = tf.distribute.get_replica_context()
        c, buf = self._seed_shard(self._read_state(), ctx.replica_id_in_sync_group, iterations)
        for k in SEED_PARTS:  # every replica's agents, in order, everywhere
            tf.nest.map_structure(lambda var, t: _assign(var, _all_gather(ctx, t, 0)),
                                  self.state[k], c[k])
        for k in ("key", "iteration", "updates"):  # the same on every replica
            self.state[k].assign(c[k])
        return _all_gather(ctx, buf, 2)

    def _seed_call_graph(self, iterations: tf.Tensor) -> tf.Tensor:
        out = self.strategy.run(self._replica_seed_call, (iterations,))
        return self.strategy.experimental_local_results(out)[0]

    # ---- acting outside the training graph ------------------------------------------------
    def _act_graph(self, params: Params, obs: tf.Tensor, key: tf.Tensor,
                   temperature: tf.Tensor):
        out = self._policy(params, self._features(obs, num_seeds=1))
        t = tf.maximum(temperature, 1e-6)
        if self.discrete:
            sampled = categorical_sample(out / t, key)
            greedy_a = tf.argmax(out, axis=-1, output_type=tf.int32)
        else:
            noise = normal(key, tf.shape(out))
            sampled = out + t * tf.exp(params["log_std"][:, None, :]) * noise
            greedy_a = out
        return tf.where(temperature > 0.0, sampled, greedy_a)[0]

    def act(self, obs: Any, key: Any = None, greedy: bool = False, agent: int = 0,
            temperature: float = 1.0) -> tf.Tensor:
        """Actions for a batch of observations ``[B, ...]`` from agent ``agent``'s policy.

        Sampled at ``temperature`` (logits divided by it; a Gaussian's std multiplied by it);
        ``greedy`` or temperature 0 takes the most likely action. Without a ``key`` each call
        draws from a new key (derived from the agent's seed and a call counter)."""
        params = tf.nest.map_structure(lambda v: v[agent:agent + 1], self.params)
        if key is None:
            self._act_calls += 1
            key = tf.random.experimental.stateless_fold_in(make_key(self.seed), self._act_calls)
        key = tf.convert_to_tensor(key, tf.int32)
        temperature = 0.0 if greedy else float(temperature)
        action = self._act(params, tf.convert_to_tensor(obs), key, tf.constant(temperature))
        if not self.discrete:
            spec = self.env.action_spec
            action = tf.reshape(action, [-1, *spec.shape])
            low, high = spec.bounds()
            action = tf.clip_by_value(action, low, high)
        return action
