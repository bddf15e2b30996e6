"""The in-graph classic control envs against gymnasium's own implementations.

Parity: 10k random (state, action) pairs per env are stepped once by our batched, XLA-compiled
``step_env`` and one by one by gymnasium's env class from the very same state; observation, reward
and termination must agree. The other tests cover the wrapper contract (time limit, auto-reset,
``final_obs``), ``check_env``/XLA compilation and the reset distribution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from imagined_rl.envs import check_env, make_key, normal, random_actions, split, uniform
from imagined_rl.envs.classic import ENVS, Acrobot, CartPole, MountainCar, Pendulum

N = 10_000
TOL = {"rtol": 1e-5, "atol": 1e-5}


@dataclasses.dataclass
class Case:
    env_cls: type
    gym_cls: Callable
    lows: tuple[float, ...]  # bounds of the sampled internal states
    highs: tuple[float, ...]
    reset_lows: tuple[float, ...]  # gymnasium's reset range of the internal state
    reset_highs: tuple[float, ...]
    action: Callable[[np.random.Generator, int], np.ndarray]
    to_gym: Callable[[np.ndarray], object]


def _discrete(n: int) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, size: rng.integers(0, n, size).astype(np.int32)


PI = math.pi
CASES = {
    # CartPole states reach past the termination thresholds (2.4, 0.2095) to exercise them.
    "CartPole-v1": Case(
        CartPole, CartPoleEnv, (-3, -3, -0.3, -3), (3, 3, 0.3, 3),
        (-0.05,) * 4, (0.05,) * 4, _discrete(2), int,
    ),
    "Acrobot-v1": Case(
        Acrobot, AcrobotEnv, (-PI, -PI, -4 * PI, -9 * PI), (PI, PI, 4 * PI, 9 * PI),
        (-0.1,) * 4, (0.1,) * 4, _discrete(3), int,
    ),
    "MountainCar-v0": Case(
        MountainCar, MountainCarEnv, (-1.2, -0.07), (0.6, 0.07),
        (-0.6, 0.0), (-0.4, 0.0), _discrete(3), int,
    ),
    # Actions beyond the [-2, 2] box exercise the torque clipping.
    "Pendulum-v1": Case(
        Pendulum, PendulumEnv, (-PI, -8), (PI, 8), (-PI, -1), (PI, 1),
        lambda rng, size: rng.uniform(-3, 3, (size, 1)).astype(np.float32),
        lambda a: np.asarray(a, np.float32),
    ),
}
NAMES = list(CASES)


def test_keys_and_draws() -> None:
    """The Philox helpers every env and agent draws from: deterministic per key, distinct
    keys, the requested ranges and moments, and (for keys and ints) the same numbers under XLA
    as in TF (TF's and XLA's float kernels differ, as for ``tf.random.stateless_*``)."""
    key = make_key(3)
    keys = split(key, 1000).numpy()
    assert keys.dtype == np.int32 and len({tuple(k) for k in keys}) == 1000
    np.testing.assert_array_equal(split(key, 4), split(key, 4))
    u = uniform(key, [100_000], -2.0, 3.0).numpy()
    assert u.min() >= -2.0 and u.max() < 3.0 and abs(u.mean() - 0.5) < 0.02
    assert abs(u.std() - 5 / math.sqrt(12)) < 0.02
    i = uniform(key, [100_000], 0, 7, tf.int32).numpy()
    np.testing.assert_allclose(np.bincount(i, minlength=7) / i.size, 1 / 7, atol=0.005)
    z = normal(key, [100_000]).numpy()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
    assert abs(np.corrcoef(uniform(keys[0], [10_000]), uniform(keys[1], [10_000]))[0, 1]) < 0.05
    assert abs(np.corrcoef(uniform(key, [10_000]), uniform(split(key)[0], [10_000]))[0, 1]) < 0.05
    j = uniform(key, [1000], 0, tf.constant(5, tf.int64), "int64").numpy()  # tensor bound
    assert j.dtype == np.int64 and j.min() == 0 and j.max() == 4
    np.testing.assert_array_equal(split(tf.constant([5, 2], tf.int64)), split(  # fold_in keys
        tf.constant([5, 2], tf.int32)))
    jit = tf.function(lambda k: (split(k, 4), uniform(k, [8], 0, 7, tf.int32)), jit_compile=True)
    for got, want in zip(jit(key), (split(key, 4), uniform(key, [8], 0, 7, tf.int32))):
        np.testing.assert_array_equal(got, want)


def test_registry() -> None:
    assert {name: case.env_cls for name, case in CASES.items()} == ENVS


@pytest.mark.parametrize("name", NAMES)
def test_dynamics_match_gymnasium(name: str) -> None:
    case = CASES[name]
    rng = np.random.default_rng(0)
    states = rng.uniform(case.lows, case.highs, (N, len(case.lows))).astype(np.float32)
    actions = case.action(rng, N)

    env = case.env_cls(num_envs=N)
    step_env = tf.function(env.step_env, jit_compile=True)
    _, obs, reward, terminated = step_env(
        env.from_gym_state(states), tf.constant(actions), make_key(0)
    )

    gym_env = case.gym_cls()
    gym_env.reset(seed=0)
    want_obs = np.empty(obs.shape, np.float32)
    want_reward = np.empty(N, np.float64)
    want_terminated = np.empty(N, bool)
    for i in range(N):
        gym_env.unwrapped.state = states[i].astype(np.float64)
        if name == "CartPole-v1":  # otherwise a second terminal step in a row would pay 0
            gym_env.unwrapped.steps_beyond_terminated = None
        o, r, term, trunc, _ = gym_env.step(case.to_gym(actions[i]))
        want_obs[i], want_reward[i], want_terminated[i] = o, r, term
        assert not trunc

    np.testing.assert_allclose(obs.numpy(), want_obs, **TOL)
    np.testing.assert_allclose(reward.numpy(), want_reward, **TOL)
    np.testing.assert_array_equal(terminated.numpy(), want_terminated)
    if name != "Pendulum-v1":  # the sampled states must reach both outcomes
        assert 0 < want_terminated.sum() < N


@pytest.mark.parametrize("name", NAMES)
def test_time_limit_and_auto_reset(name: str) -> None:
    num = 8
    env = ENVS[name](num_envs=num)
    limit = env.max_episode_steps
    step = tf.function(env.step, jit_compile=True)
    key = make_key(1)
    state, _ = env.reset(key)
    for i in range(limit + 5):
        k_act, k_step, key = tf.unstack(split(key, 3))
        t_before = state["t"].numpy()
        state, out = step(state, random_actions(env.action_spec, num, k_act), k_step)
        term, trunc = out.terminated.numpy(), out.truncated.numpy()
        done = term | trunc
        t = state["t"].numpy()

        # The counter counts steps in the episode and restarts where one ended.
        np.testing.assert_array_equal(t, np.where(done, 0, t_before + 1))
        # Truncation fires exactly at the time limit, never together with termination.
        np.testing.assert_array_equal(trunc, (t_before + 1 == limit) & ~term)
        o, fo = out.obs.numpy(), out.final_obs.numpy()
        # Where an episode ended the next obs is a fresh reset; elsewhere it is final_obs itself.
        assert np.all(np.any(o != fo, axis=1)[done])
        np.testing.assert_array_equal(o[~done], fo[~done])
        if name == "Pendulum-v1":
            assert not term.any()
            assert trunc.all() == (i == limit - 1) and trunc.any() == (i == limit - 1)
        if name == "CartPole-v1":
            np.testing.assert_array_equal(out.reward.numpy(), 1.0)
        # The fresh state after an auto-reset lies in the reset range.
        s = state["env"].numpy()[done]
        assert np.all(s >= np.float32(CASES[name].reset_lows))
        assert np.all(s <= np.float32(CASES[name].reset_highs))


@pytest.mark.parametrize("name", NAMES)
def test_check_env_and_xla(name: str) -> None:
    env = ENVS[name](num_envs=3)
    check_env(env)
    key = make_key(2)
    state, _ = env.reset(key)
    action = random_actions(env.action_spec, 3, key)
    eager_state, eager = env.step(state, action, key)
    jit_state, jit = tf.function(env.step, jit_compile=True)(state, action, key)
    np.testing.assert_allclose(jit_state["env"], eager_state["env"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit.obs, eager.obs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jit.terminated, eager.terminated)


@pytest.mark.parametrize("name", NAMES)
def test_reset_distribution(name: str) -> None:
    case = CASES[name]
    env = ENVS[name](num_envs=2000)
    reset = tf.function(env.reset_env, jit_compile=True)
    state, obs = reset(make_key(3))
    s = state.numpy()
    lo, hi = np.float32(case.reset_lows), np.float32(case.reset_highs)
    assert np.all((s >= lo) & (s <= hi))
    # Uniform over the whole range: the extremes come close to both bounds.
    width = hi - lo
    assert np.all(s.min(0) - lo <= 0.01 * width) and np.all(hi - s.max(0) <= 0.01 * width)
    # The observation is what gymnasium would show for that state, and lies in its space.
    gym_env = case.gym_cls()
    for i in range(0, 2000, 200):
        gym_env.unwrapped.state = s[i].astype(np.float64)
        if name == "Acrobot-v1":
            want = gym_env.unwrapped._get_ob()
        elif name == "Pendulum-v1":
            want = gym_env.unwrapped._get_obs()
        else:
            want = s[i]
        np.testing.assert_allclose(obs.numpy()[i], want, **TOL)
        assert gym_env.observation_space.contains(obs.numpy()[i])

    same, _ = reset(make_key(3))
    other, _ = reset(make_key(4))
    np.testing.assert_array_equal(same.numpy(), s)
    assert np.any(other.numpy() != s)
