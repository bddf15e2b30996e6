"""What the five native MinAtar games share: actions, sticky actions, injected draws, grids.

MinAtar (Young & Tian 2019, the ``minatar`` package) plays on a 10x10 grid with one boolean
channel per kind of object. Every game here keeps MinAtar's semantics exactly: the full action
set ``n l u r d f`` (``-v0``) or the game's minimal set (``-v1``), sticky actions (with
probability 0.1 the previous *applied* action repeats; the previous action survives resets, as
in ``minatar.Environment``), and difficulty ramping where the game has it.

Randomness is explicit: each step consumes one row of uniforms per env (``uniforms``), in the
order the reference consumes ``numpy`` draws, and integers come from them as
``low + floor(u * (high - low))``. A test can therefore hand both implementations the very
same draws and compare them transition by transition.
"""

from __future__ import annotations

import abc

import tensorflow as tf

from imagined_rl.envs.core import Discrete, Environment, Key, State, split, uniform

NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)  # MinAtar's action_map "n l u r d f"
SIZE = 10  # the grid is SIZE x SIZE


class MinAtar(Environment):
    """A MinAtar game as a batched, XLA-compilable env; subclasses write the game only.

    Observations are uint8 ``[10, 10, C]`` 0/1 grids (what the gymnasium adapter gives for the
    ``minatar`` package). A subclass sets ``channels``, ``minimal_actions``, how many uniforms
    a reset and a step consume (``reset_draws``, ``step_draws``), and writes ``reset_game``,
    ``step_game`` and ``observe`` on batched tensors.
    """

    channels: tuple[str, ...]
    minimal_actions: tuple[int, ...]
    reset_draws: int = 0
    step_draws: int = 0

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        *,
        minimal_action_set: bool = True,
        sticky_action_prob: float = 0.1,
        ramping: bool = True,
    ):
        super().__init__(num_envs, max_episode_steps)
        self.actions = self.minimal_actions if minimal_action_set else tuple(range(6))
        self.sticky_action_prob = float(sticky_action_prob)
        self.ramping = bool(ramping)
        self.observation_spec = tf.TensorSpec([SIZE, SIZE, len(self.channels)], tf.uint8)
        self.action_spec = Discrete(len(self.actions))

    # -- what a game writes -------------------------------------------------------------------

    @abc.abstractmethod
    def reset_game(self, u: tf.Tensor) -> State:
        """The start state of every env, from uniforms ``u`` of shape ``[N, reset_draws]``."""

    @abc.abstractmethod
    def step_game(
        self, s: State, a: tf.Tensor, u: tf.Tensor
    ) -> tuple[State, tf.Tensor, tf.Tensor]:
        """One step for full-set actions ``a``: ``(state, reward, terminal)``."""

    @abc.abstractmethod
    def observe(self, s: State) -> tf.Tensor:
        """The ``[N, 10, 10, C]`` grid of a state (any dtype holding 0/1)."""

    # -- the env contract ---------------------------------------------------------------------

    def uniforms(self, key: Key, width: int) -> tf.Tensor:
        """``[N, width]`` uniforms in ``[0, 1)``: the only randomness a game sees (a test
        replaces this to inject the reference's draws)."""
        return uniform(key, [self.num_envs, width])

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        s = self.reset_game(self.uniforms(key, self.reset_draws))
        return s, self._obs(s)

    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        s, reward, terminal = self.step_game(state, action, self.uniforms(key, self.step_draws))
        return s, self._obs(s), tf.cast(reward, tf.float32), terminal

    def reset(self, key: Key) -> tuple[State, tf.Tensor]:
        state, obs = super().reset(key)
        return {**state, "last_action": tf.zeros([self.num_envs], tf.int32)}, obs

    def step(self, state: State, action: tf.Tensor, key: Key):
        sticky_key, key = tf.unstack(split(key))
        chosen = tf.gather(tf.constant(self.actions, tf.int32), tf.cast(action, tf.int32))
        repeat = self.uniforms(sticky_key, 1)[:, 0] < self.sticky_action_prob
        applied = tf.where(repeat, state["last_action"], chosen)
        inner, step = super().step({"env": state["env"], "t": state["t"]}, applied, key)
        return {**inner, "last_action": applied}, step

    def _obs(self, s: State) -> tf.Tensor:
        return tf.cast(self.observe(s), tf.uint8)


# -- small batched helpers the games share --------------------------------------------------------


def randint(u: tf.Tensor, low: int | tf.Tensor, high: int | tf.Tensor) -> tf.Tensor:
    """``low + floor(u * (high - low))`` as int32: numpy's ``randint(low, high)`` from ``u``."""
    return low + tf.cast(tf.floor(u * tf.cast(high - low, tf.float32)), tf.int32)


def cell(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """A float32 ``[..., 10, 10]`` grid with a 1 at ``(y, x)`` (zeros where off the grid)."""
    return tf.one_hot(y, SIZE)[..., :, None] * tf.one_hot(x, SIZE)[..., None, :]


def cells(y: tf.Tensor, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The float32 ``[N, 10, 10]`` union of the cells ``(y, x)`` of ``[N, K]`` objects where
    ``mask`` (objects off the grid left out): one segment max, not K one-hot grids."""
    n = tf.shape(y)[0]
    on = mask & (y >= 0) & (y < SIZE) & (x >= 0) & (x < SIZE)
    index = tf.range(n)[:, None] * SIZE * SIZE + y * SIZE + x
    index = tf.where(on, index, n * SIZE * SIZE)  # one spare segment takes the rest
    grid = tf.math.unsorted_segment_max(tf.cast(on, tf.float32), index, n * SIZE * SIZE + 1)
    return tf.reshape(tf.maximum(grid[:-1], 0.0), [n, SIZE, SIZE])  # empty segments: -inf


def move(v: tf.Tensor, step: tf.Tensor | int, lo: int = 0, hi: int = SIZE - 1) -> tf.Tensor:
    """``v + step`` clamped to ``[lo, hi]``."""
    return tf.clip_by_value(v + step, lo, hi)


def at(grid: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``grid[n, y[n], x[n]]`` for a ``[N, 10, 10]`` grid (indices clamped onto the grid)."""
    y, x = tf.clip_by_value(y, 0, SIZE - 1), tf.clip_by_value(x, 0, SIZE - 1)
    return tf.gather_nd(grid, tf.stack([y, x], axis=-1), batch_dims=1)


def full(n: int, value: int, dtype: tf.DType = tf.int32) -> tf.Tensor:
    """A ``[n]`` tensor of ``value``."""
    return tf.fill([n], tf.constant(value, dtype))
