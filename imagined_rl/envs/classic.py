"""Gymnasium's classic control tasks as native, XLA-compilable batch environments.

Each class reproduces the dynamics of gymnasium 1.4's ``classic_control`` env of the same name
(same constants, integrator, termination and reward; see the gymnasium sources), but steps all
``num_envs`` copies at once in float32 inside the graph, so a rollout never leaves TensorFlow.

The env state is gymnasium's own internal state vector, a float32 ``[num_envs, d]`` tensor
(CartPole ``[x, x_dot, theta, theta_dot]``, Acrobot ``[th1, th2, dth1, dth2]``, MountainCar
``[position, velocity]``, Pendulum ``[th, thdot]``); ``from_gym_state`` builds it from gymnasium
states so tests can step both implementations from identical states.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from imagined_rl.envs.core import Box, Discrete, Environment, Key, State, uniform
from imagined_rl.registry import register_env


class _Classic(Environment):
    """Shared plumbing: the state is one float32 ``[num_envs, state_dim]`` tensor."""

    state_dim: int

    def from_gym_state(self, states: np.ndarray) -> State:
        """The env state for a batch of gymnasium internal states ``[num_envs, state_dim]``."""
        states = np.asarray(states, np.float32)
        if states.shape != (self.num_envs, self.state_dim):
            raise ValueError(
                f"expected states of shape {(self.num_envs, self.state_dim)}, got {states.shape}"
            )
        return tf.constant(states)

    def _uniform(self, key: Key, low: float, high: float, dim: int) -> tf.Tensor:
        """``[num_envs, dim]`` values uniform in ``[low, high)``, like ``np_random.uniform``."""
        return uniform(key, [self.num_envs, dim], low, high)


class CartPole(_Classic):
    """CartPole-v1: push a cart left or right to keep the pole upright (+1 per step)."""

    state_dim = 4
    gravity = 9.8
    masspole = 0.1
    total_mass = 1.1  # masscart 1.0 + masspole
    length = 0.5  # half the pole's length
    polemass_length = 0.05  # masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 500):
        super().__init__(num_envs, max_episode_steps)
        self.observation_spec = tf.TensorSpec([4], tf.float32)
        self.action_spec = Discrete(2)

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        s = self._uniform(key, -0.05, 0.05, 4)
        return s, s

    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        x, x_dot, theta, theta_dot = tf.unstack(state, axis=1)
        force = tf.where(tf.equal(action, 1), self.force_mag, -self.force_mag)
        cos, sin = tf.cos(theta), tf.sin(theta)
        temp = (force + self.polemass_length * tf.square(theta_dot) * sin) / self.total_mass
        thetaacc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * tf.square(cos) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * cos / self.total_mass
        # Euler: positions advance with the old velocities.
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        state = tf.stack([x, x_dot, theta, theta_dot], axis=1)
        terminated = (tf.abs(x) > self.x_threshold) | (tf.abs(theta) > self.theta_threshold)
        return state, state, tf.ones([self.num_envs], tf.float32), terminated


class Acrobot(_Classic):
    """Acrobot-v1: swing a two-link arm's tip above a line by torquing the middle joint.

    "book" dynamics integrated by one RK4 step over ``dt = 0.2``; reward -1 until the goal.
    The state is stored in float32 but each step is computed in float64, as gymnasium does.
    """

    state_dim = 4
    dt = 0.2
    max_vel_1 = 4 * math.pi
    max_vel_2 = 9 * math.pi

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 500):
        super().__init__(num_envs, max_episode_steps)
        self.observation_spec = tf.TensorSpec([6], tf.float32)
        self.action_spec = Discrete(3)

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        s = self._uniform(key, -0.1, 0.1, 4)
        return s, self._obs(s)

    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        # Integrated in float64: within one RK4 step the stage velocities can reach thousands
        # (before the clip), and float32 round-off there moves the result by up to ~1e-2.
        torque = tf.cast(action, tf.float64) - 1.0  # AVAIL_TORQUE = [-1, 0, +1]
        s = _rk4(lambda y: _acrobot_dsdt(y, torque), tf.cast(state, tf.float64), self.dt)
        th1, th2, dth1, dth2 = tf.unstack(s, axis=1)
        s = tf.stack(
            [
                _wrap(th1, -math.pi, math.pi),
                _wrap(th2, -math.pi, math.pi),
                tf.clip_by_value(dth1, -self.max_vel_1, self.max_vel_1),
                tf.clip_by_value(dth2, -self.max_vel_2, self.max_vel_2),
            ],
            axis=1,
        )
        terminated = -tf.cos(s[:, 0]) - tf.cos(s[:, 1] + s[:, 0]) > 1.0
        reward = tf.where(terminated, 0.0, -1.0)
        return tf.cast(s, tf.float32), tf.cast(self._obs(s), tf.float32), reward, terminated

    @staticmethod
    def _obs(s: tf.Tensor) -> tf.Tensor:
        th1, th2, dth1, dth2 = tf.unstack(s, axis=1)
        return tf.stack([tf.cos(th1), tf.sin(th1), tf.cos(th2), tf.sin(th2), dth1, dth2], axis=1)


def _acrobot_dsdt(s: tf.Tensor, a: tf.Tensor) -> tf.Tensor:
    """Time derivative of the Acrobot state under torque ``a`` (gymnasium's ``_dsdt``, book)."""
    m1 = m2 = l1 = 1.0
    lc1 = lc2 = 0.5
    i1 = i2 = 1.0
    g = 9.8
    theta1, theta2, dtheta1, dtheta2 = tf.unstack(s, axis=1)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * tf.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * tf.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * tf.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * tf.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * tf.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * tf.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * tf.sin(theta2) - phi2) / (
        m2 * lc2**2 + i2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return tf.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], axis=1)


def _rk4(derivs, y0: tf.Tensor, dt: float) -> tf.Tensor:
    """One classical Runge-Kutta step of ``dy/dt = derivs(y)`` over ``[0, dt]``."""
    dt2 = dt / 2.0
    k1 = derivs(y0)
    k2 = derivs(y0 + dt2 * k1)
    k3 = derivs(y0 + dt2 * k2)
    k4 = derivs(y0 + dt * k3)
    return y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def _wrap(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Shifts ``x`` by whole periods into ``[low, high]``, as gymnasium's loop-based ``wrap``."""
    period = high - low
    x = x - period * tf.maximum(tf.math.ceil((x - high) / period), 0.0)
    return x + period * tf.maximum(tf.math.ceil((low - x) / period), 0.0)


class MountainCar(_Classic):
    """MountainCar-v0: rock an underpowered car up to the flag at position 0.5 (-1 per step)."""

    state_dim = 2
    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.5
    force = 0.001
    gravity = 0.0025

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 200):
        super().__init__(num_envs, max_episode_steps)
        self.observation_spec = tf.TensorSpec([2], tf.float32)
        self.action_spec = Discrete(3)

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        position = self._uniform(key, -0.6, -0.4, 1)
        s = tf.concat([position, tf.zeros_like(position)], axis=1)
        return s, s

    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        position, velocity = tf.unstack(state, axis=1)
        push = (tf.cast(action, tf.float32) - 1.0) * self.force
        velocity = velocity + push + tf.cos(3 * position) * (-self.gravity)
        velocity = tf.clip_by_value(velocity, -self.max_speed, self.max_speed)
        position = tf.clip_by_value(position + velocity, self.min_position, self.max_position)
        # An inelastic wall on the left: hitting it stops the car.
        velocity = tf.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0.0)
        s = tf.stack([position, velocity], axis=1)
        return s, s, tf.fill([self.num_envs], -1.0), terminated


class Pendulum(_Classic):
    """Pendulum-v1: swing a pendulum up and hold it there with a bounded torque; never ends."""

    state_dim = 2
    max_speed = 8.0
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    l = 1.0  # gymnasium's name: pole length

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 200):
        super().__init__(num_envs, max_episode_steps)
        self.observation_spec = tf.TensorSpec([3], tf.float32)
        self.action_spec = Box(-self.max_torque, self.max_torque, (1,))

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        high = tf.constant([math.pi, 1.0])
        s = (2.0 * self._uniform(key, 0.0, 1.0, 2) - 1.0) * high
        return s, self._obs(s)

    def step_env(
        self, state: State, action: tf.Tensor, key: Key
    ) -> tuple[State, tf.Tensor, tf.Tensor, tf.Tensor]:
        th, thdot = tf.unstack(state, axis=1)
        u = tf.clip_by_value(tf.cast(action, tf.float32)[:, 0], -self.max_torque, self.max_torque)
        costs = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        acc = 3 * self.g / (2 * self.l) * tf.sin(th) + 3.0 / (self.m * self.l**2) * u
        newthdot = tf.clip_by_value(thdot + acc * self.dt, -self.max_speed, self.max_speed)
        s = tf.stack([th + newthdot * self.dt, newthdot], axis=1)
        return s, self._obs(s), -costs, tf.zeros([self.num_envs], tf.bool)

    @staticmethod
    def _obs(s: tf.Tensor) -> tf.Tensor:
        th, thdot = tf.unstack(s, axis=1)
        return tf.stack([tf.cos(th), tf.sin(th), thdot], axis=1)


def _angle_normalize(x: tf.Tensor) -> tf.Tensor:
    """``x`` mapped into ``[-pi, pi)``."""
    return tf.math.floormod(x + math.pi, 2 * math.pi) - math.pi


ENVS: dict[str, type[Environment]] = {
    "CartPole-v1": CartPole,
    "Acrobot-v1": Acrobot,
    "MountainCar-v0": MountainCar,
    "Pendulum-v1": Pendulum,
}
for _name, _cls in ENVS.items():
    register_env(_name)(_cls)
