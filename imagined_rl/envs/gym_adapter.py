"""Any gymnasium environment behind the functional ``BatchEnv`` contract.

:class:`GymEnv` steps ``num_envs`` Python environments on the host, through a gymnasium
``SyncVectorEnv`` in *same-step* auto-reset mode, and exposes them to TensorFlow with
``tf.numpy_function``. ``reset``/``step`` therefore work eagerly, inside ``tf.function`` and inside
``tf.while_loop`` (every output has a static shape), so a trainer written for the native in-graph
envs (PPO, the world-model loops) runs on Atari, MinAtar or any gymnasium id unchanged.

This adapter is **the one place where the graph leaves the device**: each ``step`` is a round trip
to Python, which is why ``jit_compatible`` is ``False`` (XLA cannot compile a ``PyFunc``; PPO then
compiles only its update) and why it is far slower than a native env.

Its state is **not a full snapshot**. The real environment state (emulator RAM, RNGs) lives in the
Python env objects on the host; the tensors carried in the graph are only what the host reports
back that the graph may want:

* ``"t"``: int32 ``[N]``, steps taken in the current episode (0 right after a reset);
* ``"raw_reward"``: float32 ``[N]``, the unclipped reward of the last step (wrappers that clip or
  shape rewards report the original as ``info["raw_reward"]``; otherwise it equals the reward).

So a ``GymEnv`` cannot be rewound or branched: stepping from an old state tensor continues the
host envs where they are, not where that state was. ``step``'s ``key`` is ignored too: after the
seeded ``reset`` all randomness (sticky actions, no-op starts, ...) comes from the host envs' own
seeded RNGs, so a run is reproducible from the reset key and the action sequence.

Observation dtypes: ``uint8`` stays ``uint8`` (Atari frames), floating point becomes ``float32``,
other integers become ``int32``, and boolean observations (``Box(dtype=bool)``, ``MultiBinary``:
MinAtar's channels) are cast to ``uint8`` 0/1, so every image-like observation is ``uint8``.
A ``Discrete`` observation becomes an int32 scalar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from imagined_rl.envs.core import ActionSpec, BatchEnv, Box, Discrete, Key, State, Step
from imagined_rl.errors import UserError

EnvFactory = Callable[[], Any]


class GymEnv(BatchEnv):
    """``num_envs`` host-side gymnasium environments as one ``BatchEnv``.

    Args:
      env: a gymnasium id (made with ``gym.make(env, **make_kwargs)``) or a zero-argument
        constructor returning an env: a ``gymnasium.Env`` or any object with gymnasium >= 0.26's
        API (``reset(seed=) -> (obs, info)``, ``step(a) -> (obs, r, terminated, truncated, info)``,
        ``observation_space``/``action_space`` that look like gym spaces).
      num_envs: how many copies to step together.
      seed: mixed with the key given to :meth:`reset` to pick the host seed (see
        :meth:`host_seed`), so GymEnvs built with different seeds differ under the same key.
      **make_kwargs: passed to ``gym.make`` when ``env`` is an id (e.g. ``max_episode_steps``).

    ``reset(key)`` resets every env with host seeds ``s, s+1, ..., s+N-1`` where
    ``s = host_seed(key)``, exactly like ``SyncVectorEnv.reset(seed=s)``.
    """

    jit_compatible = False

    def __init__(
        self, env: str | EnvFactory, num_envs: int, seed: int = 0, **make_kwargs: Any
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if isinstance(env, str):
            env_id = env

            def factory() -> gym.Env:
                return gym.make(env_id, **make_kwargs)

            self._label = env_id
        elif callable(env):
            if make_kwargs:
                raise TypeError("make_kwargs only apply when env is a gymnasium id")
            constructor = env

            def factory() -> gym.Env:
                return _as_gymnasium(constructor())

            self._label = getattr(env, "__name__", type(env).__name__)
        else:
            raise TypeError(f"env must be a gymnasium id or a zero-arg constructor, not {env!r}")
        venv = SyncVectorEnv(
            [factory] * int(num_envs), copy=False, autoreset_mode=AutoresetMode.SAME_STEP
        )
        self._setup(venv, seed, _max_episode_steps(venv.envs[0]))

    @classmethod
    def from_vector_env(
        cls,
        venv: VectorEnv,
        seed: int = 0,
        max_episode_steps: int | None = None,
        label: str | None = None,
    ) -> GymEnv:
        """Adapts an existing gymnasium ``VectorEnv`` (which the GymEnv then owns and closes).

        ``venv`` must auto-reset in ``SAME_STEP`` mode and report the last observation of a
        finished episode in ``infos["final_obs"]`` (an object array with mask
        ``infos["_final_obs"]``, or a full ``[N, ...]`` array, read where the episode ended).
        ``max_episode_steps`` defaults to the time limit of ``venv.envs[0]`` when it has one;
        ``label`` names the env in :attr:`name` (default: the vector env's class name).
        """
        mode = getattr(venv, "autoreset_mode", None) or venv.metadata.get("autoreset_mode")
        if mode is None or AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"GymEnv needs a vector env with autoreset_mode=SAME_STEP, this one has {mode}"
            )
        if max_episode_steps is None and getattr(venv, "envs", None):
            max_episode_steps = _max_episode_steps(venv.envs[0])
        self = cls.__new__(cls)
        self._label = label or type(venv.unwrapped).__name__
        self._setup(venv, seed, max_episode_steps)
        return self

    def _setup(self, venv: VectorEnv, seed: int, max_episode_steps: int | None) -> None:
        self.venv = venv
        self.num_envs = int(venv.num_envs)
        self.seed = int(seed)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        self._obs_np_dtype, obs_shape = _obs_layout(obs_space)
        self.observation_spec = tf.TensorSpec(obs_shape, tf.as_dtype(self._obs_np_dtype))
        self.action_spec, self._host_action = _action_layout(act_space)
        self.last_seed: int | None = None  # the host seed of the latest reset

    # ---- the contract ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"GymEnv({self._label})"

    def host_seed(self, key: Key | np.ndarray) -> int:
        """The int seed ``reset(key)`` hands the host envs: a hash of ``(seed, key)`` in
        ``[0, 2**31 - num_envs)``, so that every per-env seed ``s + i`` is a valid int32."""
        k = np.asarray(key).astype(np.int64).reshape(-1) & 0xFFFFFFFF
        entropy = [self.seed & 0xFFFFFFFFFFFFFFFF, *(int(x) for x in k)]
        state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
        return int((int(state[0]) << 32 | int(state[1])) % (2**31 - self.num_envs))

    def reset(self, key: Key) -> tuple[State, tf.Tensor]:
        obs = tf.numpy_function(
            self._host_reset, [tf.convert_to_tensor(key, tf.int32)],
            tf.as_dtype(self._obs_np_dtype), name="gym_reset",
        )
        obs = tf.ensure_shape(obs, [self.num_envs, *self.observation_spec.shape])
        state = {
            "t": tf.zeros([self.num_envs], tf.int32),
            "raw_reward": tf.zeros([self.num_envs], tf.float32),
        }
        return state, obs

    def step(self, state: State, action: tf.Tensor, key: Key) -> tuple[State, Step]:
        del key  # the host envs carry their own seeded RNGs (see the module docstring)
        n = self.num_envs
        obs_dtype = tf.as_dtype(self._obs_np_dtype)
        action = tf.convert_to_tensor(action, self.action_spec.dtype)
        # ``state["t"]`` goes in only as an ordering token: each host step data-depends on the
        # previous one, so no graph can run two of them out of order.
        out = tf.numpy_function(
            self._host_step, [action, state["t"]],
            [obs_dtype, tf.float32, tf.bool, tf.bool, obs_dtype, tf.float32], name="gym_step",
        )
        obs_shape = [n, *self.observation_spec.shape]
        obs, reward, terminated, truncated, final_obs, raw_reward = (
            tf.ensure_shape(x, s)
            for x, s in zip(out, [obs_shape, [n], [n], [n], obs_shape, [n]])
        )
        done = tf.logical_or(terminated, truncated)
        t = tf.where(done, tf.zeros_like(state["t"]), state["t"] + 1)
        new_state = {"t": t, "raw_reward": raw_reward}
        return new_state, Step(obs, reward, terminated, truncated, final_obs)

    def close(self) -> None:
        """Closes the host envs."""
        self.venv.close()

    def __enter__(self) -> GymEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- host side ------------------------------------------------------------------------
    def _obs(self, obs: Any) -> np.ndarray:
        """A fresh array of the spec's dtype (never a view of a buffer the venv will reuse)."""
        return np.array(obs, dtype=self._obs_np_dtype, copy=True)

    def _host_reset(self, key: np.ndarray) -> np.ndarray:
        self.last_seed = self.host_seed(key)
        obs, _ = self.venv.reset(seed=self.last_seed)
        return self._obs(obs)

    def _host_step(self, action: np.ndarray, _token: np.ndarray) -> list[np.ndarray]:
        obs, reward, terminated, truncated, infos = self.venv.step(self._host_action(action))
        obs = self._obs(obs)
        reward = np.asarray(reward, np.float32).reshape(self.num_envs)
        terminated = np.asarray(terminated, bool).reshape(self.num_envs)
        truncated = np.asarray(truncated, bool).reshape(self.num_envs)
        final_obs = obs.copy()
        if "final_obs" in infos:
            mask = np.asarray(infos.get("_final_obs", terminated | truncated), bool)
            finals = infos["final_obs"]
            for i in np.flatnonzero(mask):
                final_obs[i] = np.asarray(finals[i], dtype=self._obs_np_dtype)
        raw = reward.copy()
        for source in (infos, infos.get("final_info", {})):
            if "raw_reward" in source:
                has = np.asarray(source.get("_raw_reward", np.ones(self.num_envs, bool)), bool)
                raw[has] = np.asarray(source["raw_reward"], np.float32)[has]
        return [obs, reward, terminated, truncated, final_obs, raw]


# ---- spaces ---------------------------------------------------------------------------------


def _obs_layout(space: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """The numpy dtype and shape of one observation of ``space`` (see the module docstring)."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int32), ()
    if isinstance(space, spaces.MultiBinary):
        return np.dtype(np.uint8), tuple(int(d) for d in np.atleast_1d(space.n))
    if isinstance(space, spaces.Box):
        dt = np.dtype(space.dtype)
        if dt == np.bool_ or dt == np.uint8:
            out = np.dtype(np.uint8)
        elif np.issubdtype(dt, np.floating):
            out = np.dtype(np.float32)
        elif np.issubdtype(dt, np.integer):
            out = np.dtype(np.int32)
        else:
            raise UserError(f"GymEnv cannot represent observations of dtype {dt}")
        return out, tuple(int(d) for d in space.shape)
    raise UserError(
        f"GymEnv supports Box, Discrete and MultiBinary observations, not {type(space).__name__};"
        " flatten it with a gymnasium wrapper (e.g. FlattenObservation)"
    )


def _action_layout(space: Any) -> tuple[ActionSpec, Callable[[np.ndarray], np.ndarray]]:
    """The ``ActionSpec`` for ``space`` and the function turning graph actions into host ones."""
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return Discrete(int(space.n)), lambda a: np.asarray(a, np.int64) + start
    if isinstance(space, spaces.Box):
        dt = np.dtype(space.dtype)
        spec = Box(_bound(space.low), _bound(space.high), tuple(int(d) for d in space.shape))
        return spec, lambda a: np.asarray(a, dt)
    raise UserError(
        f"GymEnv supports Discrete and Box actions, not {type(space).__name__}"
    )


def _bound(x: np.ndarray) -> float | tuple:
    """A Box bound as a float when uniform, else as (nested) tuples."""
    x = np.asarray(x, np.float64)
    if x.size and np.all(x == x.flat[0]):
        return float(x.flat[0])
    return _to_tuple(x.tolist())


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else float(x)


def _max_episode_steps(env: Any) -> int | None:
    """The time limit of ``env``: its ``TimeLimit`` wrapper's, else its spec's, else ``None``."""
    e = env
    while e is not None:
        if isinstance(e, gym.wrappers.TimeLimit):
            return int(e._max_episode_steps)
        e = getattr(e, "env", None)
    spec = getattr(env, "spec", None)
    steps = getattr(spec, "max_episode_steps", None)
    return None if steps is None else int(steps)


# ---- duck-typed (gym 0.26 style) envs -------------------------------------------------------


def _as_gymnasium(env: Any) -> gym.Env:
    """``env`` itself if it is a ``gymnasium.Env``, else a thin gymnasium shim around it."""
    if isinstance(env, gym.Env):
        return env
    for attr in ("reset", "step", "observation_space", "action_space"):
        if not hasattr(env, attr):
            raise UserError(
                f"{type(env).__name__} is not a gym env: it has no {attr!r}"
                " (needs reset(seed=), step(a) and observation_space/action_space)"
            )
    return _DuckEnv(env)


def _convert_space(space: Any) -> spaces.Space:
    """A gymnasium space equal to a gym (0.26) or look-alike ``space``."""
    if isinstance(space, spaces.Space):
        return space
    kind = type(space).__name__
    if kind == "Discrete":
        return spaces.Discrete(int(space.n), start=int(getattr(space, "start", 0)))
    if kind == "Box":
        return spaces.Box(np.asarray(space.low), np.asarray(space.high),
                          tuple(space.shape), np.dtype(space.dtype))
    if kind == "MultiBinary":
        return spaces.MultiBinary(space.n)
    raise UserError(f"cannot convert a {kind} space; use Box, Discrete or MultiBinary")


class _DuckEnv(gym.Env):
    """Presents a gym-0.26-style env (same API, its own space classes) as a gymnasium env."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.observation_space = _convert_space(env.observation_space)
        self.action_space = _convert_space(env.action_space)
        self.spec = None
        self.metadata = dict(getattr(env, "metadata", None) or {})
        self.render_mode = getattr(env, "render_mode", None)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[Any, dict]:
        obs, info = self._env.reset(seed=seed)
        return obs, dict(info or {})

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), dict(info or {})

    def close(self) -> None:
        close = getattr(self._env, "close", None)
        if callable(close):
            close()
