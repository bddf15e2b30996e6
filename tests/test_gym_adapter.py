"""``GymEnv`` against gymnasium itself, and the Atari/MinAtar factories built on it.

Parity: N independent ``gym.make`` envs, reset with seeds ``s + i`` (``s`` the adapter's host seed)
and stepped with the same random actions, auto-reset by hand in the same step, must give exactly
the adapter's observations, rewards, terminated/truncated flags and final observations, over enough
steps that both terminations and time-limit truncations happen. Further tests run the adapter
inside ``tf.function``/``tf.while_loop``, through ``check_env``, with a gym-0.26-style duck-typed
env, and (when the extras are installed) on Pong, MinAtar and a PPO smoke run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from imagined_rl.envs import Box, Discrete, check_env, make_key, random_actions, split
from imagined_rl.envs.gym_adapter import GymEnv
from imagined_rl.errors import UserError

N = 3


def _actions(spec: Discrete | Box, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if isinstance(spec, Discrete):
        return rng.integers(0, spec.n, (steps, N)).astype(np.int32)
    low, high = spec.bounds()
    return rng.uniform(low, high, (steps, N, *spec.shape)).astype(np.float32)


def _reference(make: Callable[[], gym.Env], seed: int, actions: np.ndarray) -> dict:
    """Steps N separate envs by hand, same-step auto-reset; returns ``[T, N, ...]`` arrays."""
    envs = [make() for _ in range(N)]
    obs = [envs[i].reset(seed=seed + i)[0] for i in range(N)]
    out: dict[str, list] = {k: [] for k in ("obs", "reward", "terminated", "truncated", "final")}
    first = np.stack(obs)
    for a in actions:
        row: dict[str, list] = {k: [] for k in out}
        for i, env in enumerate(envs):
            act = a[i].astype(np.int64) if a.dtype == np.int32 else a[i]
            o, r, term, trunc, _ = env.step(act)
            row["final"].append(o)
            if term or trunc:
                o, _ = env.reset()
            row["obs"].append(o)
            row["reward"].append(np.float32(r))
            row["terminated"].append(bool(term))
            row["truncated"].append(bool(trunc))
        for k in out:
            out[k].append(np.stack(row[k]))
    for env in envs:
        env.close()
    ref = {k: np.stack(v) for k, v in out.items()}
    ref["first"] = first
    return ref


def _assert_same(got: dict, ref: dict, obs_dtype: np.dtype) -> None:
    np.testing.assert_array_equal(got["first"], ref["first"].astype(obs_dtype))
    for k in ("obs", "final"):
        np.testing.assert_array_equal(got[k], ref[k].astype(obs_dtype), err_msg=k)
    for k in ("reward", "terminated", "truncated"):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


PARITY = {
    # A 30-step limit on CartPole so random play both falls (terminates) and times out.
    "CartPole-v1": ({"max_episode_steps": 30}, 600),
    "Pendulum-v1": ({}, 601),  # 200-step limit: truncations at 200, 400, 600; never terminates
}


@pytest.mark.parametrize("env_id", list(PARITY))
def test_parity_with_gymnasium(env_id: str) -> None:
    kwargs, steps = PARITY[env_id]
    env = GymEnv(env_id, N, seed=5, **kwargs)
    assert env.jit_compatible is False
    limit = kwargs.get("max_episode_steps", gym.spec(env_id).max_episode_steps)
    assert env.max_episode_steps == limit
    actions = _actions(env.action_spec, steps, seed=1)
    state, obs = env.reset(make_key(11))
    got: dict[str, Any] = {"first": obs.numpy()}
    rows: dict[str, list] = {k: [] for k in ("obs", "reward", "terminated", "truncated", "final")}
    key = make_key(0)
    for a in actions:
        state, step = env.step(state, tf.constant(a), key)
        for k, v in zip(("obs", "reward", "terminated", "truncated", "final"), step):
            rows[k].append(v.numpy())
        done = step.terminated.numpy() | step.truncated.numpy()
        assert np.all(state["t"].numpy()[done] == 0)
    got.update({k: np.stack(v) for k, v in rows.items()})
    ref = _reference(lambda: gym.make(env_id, **kwargs), env.last_seed, actions)
    _assert_same(got, ref, np.float32)
    assert ref["truncated"].any()
    if env_id == "CartPole-v1":
        assert ref["terminated"].any()
    # final_obs differs from obs exactly where an episode ended.
    done = ref["terminated"] | ref["truncated"]
    differs = np.any(got["final"] != got["obs"], axis=tuple(range(2, got["obs"].ndim)))
    np.testing.assert_array_equal(differs, done)
    env.close()


def test_runs_inside_tf_function_while_loop() -> None:
    """40 steps in one ``tf.while_loop`` under ``tf.function`` match gymnasium step for step."""
    steps, kwargs = 40, {"max_episode_steps": 30}
    env = GymEnv("CartPole-v1", N, **kwargs)
    actions = tf.constant(_actions(env.action_spec, steps, seed=2))

    @tf.function
    def rollout(key: tf.Tensor) -> tuple:
        state, obs = env.reset(key)
        arrays = [tf.TensorArray(d, steps) for d in (tf.float32, tf.float32, tf.bool, tf.bool)]

        def body(t, state, arrays):
            state, step = env.step(state, actions[t], key)
            vals = (step.obs, step.reward, step.terminated, step.truncated)
            return t + 1, state, [a.write(t, v) for a, v in zip(arrays, vals)]

        _, state, arrays = tf.while_loop(
            lambda t, *_: t < steps, body, (0, state, arrays), parallel_iterations=10
        )
        return (obs, *(a.stack() for a in arrays))

    key = make_key(3)
    first, obs, reward, terminated, truncated = (x.numpy() for x in rollout(key))
    ref = _reference(lambda: gym.make("CartPole-v1", **kwargs), env.host_seed(key),
                     actions.numpy())
    np.testing.assert_array_equal(first, ref["first"])
    np.testing.assert_array_equal(obs, ref["obs"])
    np.testing.assert_array_equal(reward, ref["reward"])
    np.testing.assert_array_equal(terminated, ref["terminated"])
    np.testing.assert_array_equal(truncated, ref["truncated"])
    env.close()


def test_specs_seeding_and_check_env() -> None:
    cart, pend = GymEnv("CartPole-v1", 2), GymEnv("Pendulum-v1", 2, seed=1)
    assert cart.observation_spec == tf.TensorSpec([4], tf.float32)
    assert cart.action_spec == Discrete(2) and cart.max_episode_steps == 500
    assert pend.action_spec == Box(-2.0, 2.0, (1,)) and pend.max_episode_steps == 200
    for env in (cart, pend):
        check_env(env)
    # reset is a deterministic function of (seed, key); other keys or seeds give other seeds.
    _, a = cart.reset(make_key(7))
    _, b = cart.reset(make_key(7))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert cart.host_seed(make_key(7)) != cart.host_seed(make_key(8))
    assert cart.host_seed(make_key(7)) != GymEnv("CartPole-v1", 2, seed=1).host_seed(make_key(7))
    with pytest.raises(ValueError, match="SAME_STEP"):
        GymEnv.from_vector_env(SyncVectorEnv([lambda: gym.make("CartPole-v1")]))
    cart.close()
    pend.close()


def test_from_vector_env_matches_constructor() -> None:
    venv = SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2,
                         autoreset_mode=AutoresetMode.SAME_STEP)
    a, b = GymEnv.from_vector_env(venv), GymEnv("CartPole-v1", 2)
    assert a.max_episode_steps == 500
    (sa, oa), (sb, ob) = a.reset(make_key(1)), b.reset(make_key(1))
    np.testing.assert_array_equal(oa.numpy(), ob.numpy())
    for _ in range(30):
        act = tf.constant([1, 0])
        (sa, xa), (sb, xb) = a.step(sa, act, make_key(0)), b.step(sb, act, make_key(0))
        for u, v in zip(xa, xb):
            np.testing.assert_array_equal(u.numpy(), v.numpy())


class _Space:
    """A space from some other gym: only the attributes a duck-typed converter may read."""


class _DuckCounter:
    """A gym-0.26-style env with its own space classes: obs is the step count (as bool bits),
    reward 5 each step, terminated after 3 steps."""

    def __init__(self) -> None:
        self.observation_space = type("MultiBinary", (_Space,), {"n": 2})()
        self.action_space = type("Discrete", (_Space,), {"n": 2, "start": 0})()
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t & 1, self.t & 2], bool)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), 5.0, self.t >= 3, False, {}


def test_duck_typed_env_and_raw_reward() -> None:
    """A non-gymnasium env works; ``RawRewardClip`` clips and ``raw_reward`` keeps the original
    (also on the terminal step, whose info gymnasium moves to ``final_info``)."""
    from imagined_rl.envs.atari import RawRewardClip
    from imagined_rl.envs.gym_adapter import _as_gymnasium

    plain = GymEnv(_DuckCounter, 2)
    clipped = GymEnv(lambda: RawRewardClip(_as_gymnasium(_DuckCounter())), 2)
    for env in (plain, clipped):
        assert env.observation_spec == tf.TensorSpec([2], tf.uint8)  # bool obs -> uint8 0/1
        check_env(env)
        state, obs = env.reset(make_key(0))
        np.testing.assert_array_equal(obs.numpy(), np.zeros([2, 2], np.uint8))
        for t in range(1, 7):
            state, step = env.step(state, tf.constant([0, 1]), make_key(0))
            ended = t % 3 == 0
            assert step.terminated.numpy().tolist() == [ended, ended]
            count = 3 if ended else t % 3
            want_final = np.array([count & 1, (count & 2) > 0], np.uint8)
            np.testing.assert_array_equal(step.final_obs.numpy()[0], want_final)
            np.testing.assert_array_equal(state["raw_reward"].numpy(), [5.0, 5.0])
            want_reward = 1.0 if env is clipped else 5.0
            np.testing.assert_array_equal(step.reward.numpy(), [want_reward] * 2)
        env.close()


def test_missing_extra_is_a_one_line_user_error() -> None:
    from imagined_rl.envs.atari import _require

    with pytest.raises(UserError, match=r"pip install .*\[atari\]") as err:
        _require("no_such_module_for_imagined_rl", "atari")
    assert "\n" not in str(err.value)


# ---- Atari / MinAtar (need the [atari] / [minatar] extras) ------------------------------------


def _random_run(env: GymEnv, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    state, obs = env.reset(make_key(seed))
    key = make_key(seed + 1)
    rows: dict[str, list] = {"reward": [], "raw": [], "done": []}
    for _ in range(steps):
        k_act, k_env, key = tf.unstack(split(key, 3))
        state, step = env.step(state, random_actions(env.action_spec, env.num_envs, k_act), k_env)
        rows["reward"].append(step.reward.numpy())
        rows["raw"].append(state["raw_reward"].numpy())
        rows["done"].append((step.terminated | step.truncated).numpy())
        obs = step.obs
    rows["last_obs"] = [obs.numpy()]
    return {k: np.stack(v) for k, v in rows.items()}


def test_atari_pong_rgb_and_space_invaders_raw_rewards() -> None:
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from imagined_rl.envs.atari import atari_id, make_atari

    assert atari_id("pong") == atari_id("Pong") == "ALE/Pong-v5"
    assert atari_id("space_invaders") == "ALE/SpaceInvaders-v5"
    with pytest.raises(UserError, match="did you mean"):
        atari_id("pongg")
    env = make_atari("pong", 2)
    assert env.observation_spec == tf.TensorSpec([105, 80, 3], tf.uint8)
    assert env.action_spec == Discrete(6)
    check_env(env)
    run = _random_run(env, 250)
    assert set(np.unique(run["reward"])) <= {-1.0, 0.0, 1.0}
    assert (run["reward"] != 0).any()  # random Pong concedes points within 250 steps
    env.close()
    # Space Invaders scores 5..30 per alien: clipped to 1, the raw score kept in the state.
    env = make_atari("SpaceInvaders", 2, sticky_actions=False)
    run = _random_run(env, 150)
    assert set(np.unique(run["reward"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sign(run["raw"]), run["reward"])
    assert (run["raw"] > 1).any()
    env.close()


@pytest.mark.parametrize("backend", ["gymnasium", "ale_vector"])
def test_atari_gray_84(backend: str) -> None:
    pytest.importorskip("ale_py")
    if backend == "gymnasium":
        pytest.importorskip("cv2")
    from imagined_rl.envs.atari import make_atari

    env = make_atari("Pong", 2, frame_size=(84, 84), grayscale=True, max_episode_steps=40,
                     backend=backend)
    assert env.observation_spec == tf.TensorSpec([84, 84, 1], tf.uint8)
    assert env.max_episode_steps == 40
    check_env(env)
    state, _ = env.reset(make_key(0))
    for t in range(1, 41):
        state, step = env.step(state, tf.zeros([2], tf.int32), make_key(0))
        assert step.truncated.numpy().tolist() == [t == 40] * 2
    # The episode cut at step 40: final_obs is its last frame, obs the next episode's first.
    assert np.any(step.final_obs.numpy() != step.obs.numpy())
    np.testing.assert_array_equal(state["t"].numpy(), [0, 0])
    env.close()


@pytest.mark.parametrize(
    "game,channels",
    [("asterix", 4), ("breakout", 4), ("freeway", 7), ("seaquest", 10), ("space_invaders", 6)],
)
def test_minatar_games(game: str, channels: int) -> None:
    pytest.importorskip("minatar")
    from imagined_rl.envs.atari import make_minatar

    env = make_minatar(game, 2, max_episode_steps=25)
    assert env.observation_spec == tf.TensorSpec([10, 10, channels], tf.uint8)
    assert env.max_episode_steps == 25
    check_env(env)
    run = _random_run(env, 30)
    assert run["done"].any()  # at the latest the 25-step limit
    assert set(np.unique(run["last_obs"])) <= {0, 1}
    env.close()


def test_ppo_smoke_on_minatar_breakout() -> None:
    pytest.importorskip("minatar")
    from imagined_rl import registry
    from imagined_rl.envs.atari import make_minatar
    from imagined_rl.ppo import PPO

    hp = registry.hparams("ppo_base").parse(
        "num_envs=4,epoch_length=16,num_minibatches=2,optimization_epochs=1,iterations_per_call=1"
    )
    agent = PPO(make_minatar("breakout", 4), hp, total_env_steps=1000)
    out = agent.train()
    assert agent.iteration == 1
    assert np.all(np.isfinite(out["policy_loss"])) and np.all(np.isfinite(out["value_loss"]))
    agent.env.close()


def test_recorded_atari_data_keeps_the_raw_score(tmp_path):
    """Training rewards are clipped to their sign, but ``unclipped_reward`` on disk is the game's
    score (Space Invaders pays 5-30 a hit), as tensor2tensor's data had it."""
    from imagined_rl import data
    from imagined_rl.envs.atari import make_atari

    env = make_atari("space_invaders", 2, seed=0)
    data.record(env, lambda obs, key: random_actions(env.action_spec, 2, key), 600,
                str(tmp_path), seed=0, steps_per_shard=600, finish_episodes=False,
                progress=False)
    steps = list(data.read_steps(str(tmp_path), "train").as_numpy_iterator())
    reward = np.array([s["reward"] for s in steps])
    raw = np.array([s["unclipped_reward"] for s in steps])
    assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0} and raw.max() > 1.0
    np.testing.assert_array_equal(np.sign(raw), reward)
    env.close()
