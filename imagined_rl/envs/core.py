"""The functional batch-env contract: the spine every environment and trainer shares.

A ``BatchEnv`` holds no mutable Python state. ``reset`` and ``step`` are pure functions of an
explicit state (any nest of tensors with a leading ``[num_envs]`` axis) and an explicit stateless
RNG key (an int32 tensor of shape ``[2]``). That lets a whole rollout run inside one
``tf.while_loop`` and compile with XLA, and makes every run reproducible from its seed.

Native environments subclass :class:`Environment` and write only the dynamics of one step
(``reset_env``/``step_env``); the base class adds the episode time limit and auto-reset, and keeps
the last real observation of a finished episode in ``Step.final_obs`` so that truncated episodes can
be bootstrapped (gymnax's split of ``step`` and ``step_env``).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from imagined_rl.errors import UserError

State = Any  # a nest of tensors, each with a leading [num_envs] axis
Key = tf.Tensor  # int32 [2], a stateless RNG seed


@dataclasses.dataclass(frozen=True)
class Discrete:
    """``n`` actions, numbered ``0 .. n-1``; a batch of actions is int32 ``[num_envs]``."""

    n: int
    dtype: tf.DType = tf.int32

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class Box:
    """A real vector action in ``[low, high]`` (bounds broadcast to ``shape``)."""

    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    shape: tuple[int, ...]
    dtype: tf.DType = tf.float32

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.broadcast_to(np.asarray(self.low, np.float32), self.shape)
        high = np.broadcast_to(np.asarray(self.high, np.float32), self.shape)
        return low, high


ActionSpec = Discrete | Box


class Step(NamedTuple):
    """What ``step`` returns besides the new state; every field has a leading [num_envs] axis.

    ``obs`` is the observation the agent acts on next: after an episode ends it is already the
    first observation of the next episode, while ``final_obs`` holds the last observation of the
    episode that ended (equal to ``obs`` where nothing ended).
    """

    obs: tf.Tensor
    reward: tf.Tensor  # float32
    terminated: tf.Tensor  # bool: the MDP reached a terminal state (do not bootstrap)
    truncated: tf.Tensor  # bool: cut by a time limit (bootstrap from final_obs)
    final_obs: tf.Tensor


_PHILOX = 1  # tf.random.Algorithm.PHILOX


def _philox(key: Key) -> tuple[tf.Tensor, tf.Tensor]:
    """``key`` (int32 ``[2]``) as Philox's 64-bit key and a zero counter.

    TF's seeded ops (``tf.random.stateless_*``) first scramble the seed into a key and counter
    with one Philox block of their own. Philox takes any 64-bit key as a stream number (ours
    are ``make_key``'s seed words or ``split``'s outputs), so our keys key it directly: the
    ppo_cartpole program's HLO 8,018 -> 4,360 instructions, compile ~4.3 -> 3.5 s
    (bench/README.md). An int64 key (``stateless_fold_in`` with int64 data, as the world-model
    trainer's per-step keys) keeps the low 32 bits of each word: its random word stays uniform
    and its data word (a step count) whole.
    """
    k = tf.reshape(tf.bitcast(tf.cast(key, tf.int32), tf.uint64), [1])
    return k, tf.zeros([2], tf.uint64)


def split(key: Key, num: int = 2) -> tf.Tensor:
    """Derives ``num`` independent keys (int32 ``[num, 2]``) from ``key``; XLA-compatible."""
    k, c = _philox(key)
    return tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[num, 2], key=k, counter=c, alg=_PHILOX, dtype=tf.int32)


def uniform(key: Key, shape: Any, minval: Any = 0.0, maxval: Any = 1.0,
            dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Uniform numbers in ``[minval, maxval)``: floats (bounds broadcast), or ints when
    ``dtype`` is int32/int64 (scalar bounds, ``minval < maxval``: XLA does not check)."""
    dtype = tf.as_dtype(dtype)
    k, c = _philox(key)
    if dtype.is_integer:
        return tf.raw_ops.StatelessRandomUniformIntV2(
            shape=shape, key=k, counter=c, alg=_PHILOX, minval=tf.cast(minval, dtype),
            maxval=tf.cast(maxval, dtype))
    u = tf.raw_ops.StatelessRandomUniformV2(shape=shape, key=k, counter=c, alg=_PHILOX,
                                            dtype=dtype)
    return u * (tf.cast(maxval, dtype) - tf.cast(minval, dtype)) + tf.cast(minval, dtype)


def normal(key: Key, shape: Any) -> tf.Tensor:
    """Standard normal float32 numbers."""
    k, c = _philox(key)
    return tf.raw_ops.StatelessRandomNormalV2(shape=shape, key=k, counter=c, alg=_PHILOX)


def make_key(seed: int) -> tf.Tensor:
    """The root key for an integer seed."""
    return tf.constant([seed & 0x7FFFFFFF, (seed >> 31) & 0x7FFFFFFF], tf.int32)


class BatchEnv(abc.ABC):
    """``num_envs`` copies of an environment stepped together as one pure function.

    Subclasses set ``num_envs``, ``observation_spec`` (one env's observation) and ``action_spec``.
    ``max_episode_steps`` is the time limit (``None``: none), and ``jit_compatible`` says whether
    ``step`` may run inside an XLA-compiled function (a Python-backed env cannot).
    """

    num_envs: int
    observation_spec: tf.TensorSpec
    action_spec: ActionSpec
    max_episode_steps: int | None = None
    jit_compatible: bool = True

    @abc.abstractmethod
    def reset(self, key: Key) -> tuple[State, tf.Tensor]:
        """Starts every env; returns ``(state, obs)``."""

    @abc.abstractmethod
    def step(self, state: State, action: tf.Tensor, key: Key) -> tuple[State, Step]:
        """Advances every env by one action; finished envs restart inside this call."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def with_num_envs(self, num_envs: int) -> BatchEnv:
        """The same env with ``num_envs`` copies: one replica's share under ``tf.distribute``.

        A shallow copy (wrapped envs resized too), which suits envs whose only batch-size
        dependence is ``num_envs``; an env holding more batch-sized Python state overrides it.
        """
        env = copy.copy(self)
        env.num_envs = int(num_envs)
        for name, inner in vars(env).items():
            if isinstance(inner, BatchEnv):
                setattr(env, name, inner.with_num_envs(num_envs))
        return env


class Environment(BatchEnv):
    """A native, in-graph environment: write ``reset_env`` and ``step_env``, get the rest.

    ``step`` adds a per-env step counter, truncation at ``max_episode_steps`` and auto-reset.
    The state it carries is ``{"env": <your state>, "t": int32 [num_envs]}``.
    """

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None):
        if int(num_envs) < 1:
            raise EnvCheckError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        if max_episode_steps is not None:
            self.max_episode_steps = int(max_episode_steps)

    @abc.abstractmethod
    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        """Initial ``(state, obs)`` for all ``num_envs`` envs."""

    @abc.abstractmethod
    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One step of the dynamics: ``(state, obs, reward, terminated)``, no resets."""

    def reset(self, key: Key) -> tuple[State, tf.Tensor]:
        env_state, obs = self.reset_env(key)
        return {"env": env_state, "t": tf.zeros([self.num_envs], tf.int32)}, obs

    def step(self, state: State, action: tf.Tensor, key: Key) -> tuple[State, Step]:
        step_key, reset_key = tf.unstack(split(key))
        env_state, obs, reward, terminated = self.step_env(state["env"], action, step_key)
        t = state["t"] + 1
        if self.max_episode_steps is None:
            truncated = tf.zeros_like(terminated)
        else:
            truncated = tf.logical_and(t >= self.max_episode_steps, tf.logical_not(terminated))
        done = tf.logical_or(terminated, truncated)
        fresh_state, fresh_obs = self.reset_env(reset_key)
        env_state = tf.nest.map_structure(
            lambda new, old: _where(done, new, old), fresh_state, env_state
        )
        next_obs = _where(done, fresh_obs, obs)
        t = tf.where(done, tf.zeros_like(t), t)
        step = Step(next_obs, tf.cast(reward, tf.float32), terminated, truncated, obs)
        return {"env": env_state, "t": t}, step


def push_frame(stack: tf.Tensor, obs: tf.Tensor, first: tf.Tensor) -> tf.Tensor:
    """The next frame stack ``[N, ..., k*C]`` (frames concatenated on the last axis, oldest
    first): ``obs`` pushed in, or, where ``first`` (a new episode), ``obs`` repeated k times."""
    k = stack.shape[-1] // obs.shape[-1]
    pushed = tf.concat([stack[..., obs.shape[-1]:], obs], axis=-1)
    return _where(first, tf.concat([obs] * k, axis=-1), pushed)


class FrameStack(BatchEnv):
    """``env`` observed through its last ``k`` frames, concatenated on the last axis (oldest
    first; an episode's first observation repeated to fill the stack), so that a policy sees
    motion (SimPLe's and DQN's 4 stacked Atari frames). The stack is part of the env state, so
    it flows through compiled rollouts; ``final_obs`` is stacked too (bootstrapping sees the
    same kind of input). A world model's window already is a stack: ``SimulatedBatchEnv``
    exposes it with ``frame_stack=k`` in the same layout.
    """

    def __init__(self, env: BatchEnv, k: int):
        if int(k) < 1:
            raise EnvCheckError(f"frame stack size must be >= 1, got {k}")
        self.env, self.k = env, int(k)
        self.num_envs, self.action_spec = env.num_envs, env.action_spec
        self.max_episode_steps, self.jit_compatible = env.max_episode_steps, env.jit_compatible
        spec = env.observation_spec
        if not spec.shape.rank:
            raise EnvCheckError(f"env {env.name}: cannot stack scalar observations")
        self.observation_spec = tf.TensorSpec((*spec.shape[:-1], spec.shape[-1] * self.k),
                                              spec.dtype)

    @property
    def name(self) -> str:
        return f"FrameStack{self.k}[{self.env.name}]"

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()

    def reset(self, key: Key) -> tuple[State, tf.Tensor]:
        state, obs = self.env.reset(key)
        stack = tf.concat([obs] * self.k, axis=-1)
        return {"env": state, "stack": stack, **_raw(state)}, stack

    def step(self, state: State, action: tf.Tensor, key: Key) -> tuple[State, Step]:
        inner, step = self.env.step(state["env"], action, key)
        done = tf.logical_or(step.terminated, step.truncated)
        final = push_frame(state["stack"], step.final_obs, tf.zeros_like(done))
        stack = push_frame(state["stack"], step.obs, done)
        out = Step(stack, step.reward, step.terminated, step.truncated, final)
        return {"env": inner, "stack": stack, **_raw(inner)}, out


def _raw(state: State) -> dict[str, tf.Tensor]:
    """The inner env's unclipped reward, kept at the top where :func:`raw_reward` looks."""
    return {"raw_reward": state["raw_reward"]} if isinstance(state, dict) and (
        "raw_reward" in state) else {}


def _where(mask: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``tf.where`` on a ``[num_envs]`` mask, broadcast over the trailing axes of ``a``/``b``."""
    mask = tf.reshape(mask, [-1] + [1] * (a.shape.rank - 1))
    return tf.where(mask, a, b)


class EnvCheckError(UserError, ValueError):
    """An environment breaks the batch-env contract; the message says exactly how."""


def check_env(env: BatchEnv, seed: int = 0, steps: int = 3) -> None:
    """Runs ``reset`` and a few ``step`` calls and raises :class:`EnvCheckError` on the first
    broken promise: missing specs, non-tensor state, wrong shapes or dtypes, wrong batch size.
    """
    name = getattr(env, "name", type(env).__name__)

    def fail(msg: str) -> None:
        raise EnvCheckError(f"env {name}: {msg}")

    n = getattr(env, "num_envs", None)
    if not isinstance(n, (int, np.integer)) or n < 1:
        fail(f"num_envs must be a positive int, got {n!r}")
    spec = getattr(env, "observation_spec", None)
    if not isinstance(spec, tf.TensorSpec):
        fail(f"observation_spec must be a tf.TensorSpec, got {type(spec).__name__}")
    act = getattr(env, "action_spec", None)
    if not isinstance(act, (Discrete, Box)):
        fail(f"action_spec must be Discrete or Box, got {type(act).__name__}")

    def check_obs(obs: Any, where: str) -> None:
        if not isinstance(obs, (tf.Tensor, np.ndarray)):
            fail(f"{where} must be a tensor, got {type(obs).__name__}")
        obs = tf.convert_to_tensor(obs)
        want = [n, *spec.shape]
        if list(obs.shape) != want:
            fail(f"{where} has shape {list(obs.shape)}, expected {want} "
                 "([num_envs, *observation_spec.shape])")
        if obs.dtype != spec.dtype:
            fail(f"{where} has dtype {obs.dtype.name}, observation_spec says {spec.dtype.name}")

    def check_state(state: Any, where: str) -> None:
        for path, leaf in _flatten_with_paths(state):
            if not isinstance(leaf, (tf.Tensor, tf.Variable)) and not (
                isinstance(leaf, np.ndarray) and leaf.ndim > 0
            ):
                fail(f"{where} leaf {path} is a {type(leaf).__name__}, not a tensor "
                     "(state must be a nest of tensors with a leading [num_envs] axis)")
            shape = tuple(leaf.shape)
            if not shape or shape[0] != n:
                fail(f"{where} leaf {path} has shape {list(shape)}, "
                     f"needs leading axis num_envs={n}")

    key = make_key(seed)
    out = env.reset(key)
    if not isinstance(out, tuple) or len(out) != 2:
        fail("reset(key) must return a (state, obs) tuple")
    state, obs = out
    check_state(state, "reset state")
    check_obs(obs, "reset obs")
    for i in range(steps):
        k_act, k_step, key = tf.unstack(split(key, 3))
        action = random_actions(act, n, k_act)
        out = env.step(state, action, k_step)
        if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], Step):
            fail("step(state, action, key) must return (state, Step)")
        state, step = out
        check_state(state, f"step {i} state")
        check_obs(step.obs, f"step {i} obs")
        check_obs(step.final_obs, f"step {i} final_obs")
        fields = (("reward", tf.float32), ("terminated", tf.bool), ("truncated", tf.bool))
        for field, dtype in fields:
            value = tf.convert_to_tensor(getattr(step, field))
            if list(value.shape) != [n]:
                fail(f"step {i} {field} has shape {list(value.shape)}, expected [{n}]")
            if value.dtype != dtype:
                fail(f"step {i} {field} has dtype {value.dtype.name}, expected {dtype.name}")
        if not bool(tf.reduce_all(tf.math.is_finite(step.reward))):
            fail(f"step {i} reward has non-finite values")


def raw_reward(state: State, step: Step) -> tf.Tensor:
    """The env's unclipped reward for a step: ``state["raw_reward"]`` where an env (the Atari
    adapter) clips its training reward and keeps the raw one there, else ``step.reward``."""
    if isinstance(state, dict) and "raw_reward" in state:
        return state["raw_reward"]
    return step.reward


def random_actions(spec: ActionSpec, num: int, key: Key) -> tf.Tensor:
    """Uniformly random actions for ``num`` envs."""
    if isinstance(spec, Discrete):
        return uniform(key, [num], 0, spec.n, dtype=tf.int32)
    low, high = spec.bounds()
    u = uniform(key, [num, *spec.shape])
    return tf.constant(low) + u * tf.constant(high - low)


def _flatten_with_paths(nest: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[(path, leaf)]`` for a nest of dicts/lists/tuples; paths read like ``env/x``."""
    if isinstance(nest, dict):
        items = [(str(k), nest[k]) for k in sorted(nest, key=str)]
    elif isinstance(nest, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(nest)]
    else:
        return [(prefix or "<root>", nest)]
    return [pair for k, v in items for pair in _flatten_with_paths(v, f"{prefix}/{k}".lstrip("/"))]
