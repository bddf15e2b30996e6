"""Atari (ALE) and MinAtar games as ``GymEnv`` batch environments.

``make_atari`` follows SimPLe (Kaiser et al., 2019) and the Machado et al. (2018) protocol: ALE
v5 with sticky actions (p = 0.25), 4-frame skip with a max over the last two frames, up to 30
no-op starts, no life-loss terminals, a downscaled frame (SimPLe's 105x80 RGB by default, or the
DQN-style 84x84 gray) and rewards clipped to their sign, with the unclipped reward kept in the
adapter state as ``state["raw_reward"]`` for reporting real game scores.

``make_minatar`` gives the ``minatar`` package's five games with a step limit (their gym ids
have none), through the adapter: the reference and the baseline for ``envs/minatar/``, whose
native in-graph games are what the ``MinAtar/*`` ids and the problems use.

Both import their optional packages lazily and raise a one-line :class:`UserError` naming the
pip command when the ``[atari]`` or ``[minatar]`` extra is missing.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from imagined_rl.envs.gym_adapter import GymEnv
from imagined_rl.errors import UserError

ALE_FRAMES_PER_EPISODE = 108_000  # ALE v5's own cap: 30 minutes of play
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


def _require(module: str, extra: str) -> Any:
    """Imports ``module`` or raises a one-line UserError saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(
            f"{module} is not installed ({e}); install the [{extra}] extra:"
            f" pip install 'imagined_rl[{extra}]' (from a checkout: pip install -e '.[{extra}]')"
        ) from None


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def _pick(game: str, table: dict[str, str], kind: str) -> str:
    """``table[_norm(game)]`` or a UserError with close matches."""
    key = _norm(game)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.6)
    hint = f"did you mean: {', '.join(table[c] for c in close)}?" if close else (
        f"known: {', '.join(sorted(table.values())[:12])}, ...")
    raise UserError(f"unknown {kind} game {game!r}; {hint}")


def atari_id(game: str) -> str:
    """The ALE v5 id for a game name: ``"Pong"``, ``"pong"`` -> ``"ALE/Pong-v5"``,
    ``"space_invaders"`` -> ``"ALE/SpaceInvaders-v5"``."""
    ale_py = _require("ale_py", "atari")
    gym.register_envs(ale_py)
    name = game.removeprefix("ALE/").split("-v")[0]
    table = {
        _norm(k[len("ALE/"):-len("-v5")]): k
        for k in gym.registry
        if k.startswith("ALE/") and k.endswith("-v5")
    }
    return _pick(name, table, "Atari")


class RawRewardClip(gym.Wrapper):
    """Clips the reward to its sign and reports the unclipped one as ``info["raw_reward"]``
    (``GymEnv`` reads it into ``state["raw_reward"]``)."""

    def __init__(self, env: gym.Env, clip: bool = True) -> None:
        super().__init__(env)
        self.clip = bool(clip)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["raw_reward"] = float(reward)
        if self.clip:
            reward = float(np.sign(reward))
        return obs, reward, terminated, truncated, info


def make_atari(
    game: str,
    num_envs: int,
    seed: int = 0,
    *,
    frame_size: tuple[int, int] = (105, 80),
    grayscale: bool = False,
    sticky_actions: bool = True,
    noop_max: int = 30,
    clip_rewards: bool = True,
    max_episode_steps: int | None = None,
    backend: Literal["gymnasium", "ale_vector"] = "gymnasium",
) -> GymEnv:
    """``num_envs`` preprocessed Atari games as one ``GymEnv``.

    Args:
      game: ``"Pong"``, ``"pong"``, ``"SpaceInvaders"``, ``"space_invaders"`` or ``"ALE/Pong-v5"``.
      frame_size: ``(height, width)`` of the observation, resized with area interpolation.
      grayscale: gray frames ``(h, w, 1)`` instead of RGB ``(h, w, 3)``; uint8 either way.
      sticky_actions: ALE's ``repeat_action_probability`` 0.25 (Machado et al.) instead of 0.
      noop_max: up to this many no-ops after each reset (0: none).
      clip_rewards: rewards become ``sign(r)``; ``state["raw_reward"]`` keeps ``r``.
      max_episode_steps: a time limit in agent steps (each = 4 frames). Without one, ALE's own
        108,000-frame cap still truncates episodes, and ``max_episode_steps`` reports 27,000.
      backend: ``"gymnasium"`` (default): ``gym.make("ALE/<Game>-v5", frameskip=1)`` +
        gymnasium's ``AtariPreprocessing``, one Python env per copy in a ``SyncVectorEnv``.
        ``"ale_vector"``: ale_py's C++ ``AtariVectorEnv`` (threaded, preprocessing in C++), which
        does support same-step auto-reset with ``infos["final_obs"]`` and so fits the contract
        through :meth:`GymEnv.from_vector_env`; it is the faster choice, mainly for the
        84x84 gray setting. Its frames, no-op counts and RNG streams are not identical to the
        gymnasium pipeline's (same preprocessing recipe, different implementation), and its
        no-op count is measured in frames.

    Example: ``make_atari("pong", 16)`` gives observations ``[16, 105, 80, 3]`` uint8;
    ``make_atari("pong", 16, frame_size=(84, 84), grayscale=True)`` gives ``[16, 84, 84, 1]``.
    """
    env_id = atari_id(game)
    height, width = (int(frame_size[0]), int(frame_size[1]))
    sticky = 0.25 if sticky_actions else 0.0
    limit = (ALE_FRAMES_PER_EPISODE // 4) if max_episode_steps is None else int(max_episode_steps)
    if backend == "ale_vector":
        from ale_py.vector_env import AtariVectorEnv

        venv = AtariVectorEnv(
            gym.spec(env_id).kwargs["game"], int(num_envs),
            img_height=height, img_width=width, grayscale=grayscale, stack_num=1,
            frameskip=4, maxpool=True, noop_max=int(noop_max),
            repeat_action_probability=sticky, reward_clipping=False, use_fire_reset=False,
            episodic_life=False, max_num_frames_per_episode=limit * 4,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        return GymEnv.from_vector_env(
            _ALEVectorFrames(venv, clip_rewards, grayscale), seed=seed, max_episode_steps=limit,
            label=f"{env_id}, ale_vector",
        )
    if backend != "gymnasium":
        raise UserError(f"unknown Atari backend {backend!r}; use 'gymnasium' or 'ale_vector'")
    _require("cv2", "atari")  # gymnasium's AtariPreprocessing resizes with OpenCV

    def construct() -> gym.Env:
        env = gym.make(env_id, frameskip=1, repeat_action_probability=sticky)
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=int(noop_max), frame_skip=4, screen_size=(width, height),
            terminal_on_life_loss=False, grayscale_obs=grayscale, grayscale_newaxis=True,
        )
        env = RawRewardClip(env, clip_rewards)
        if max_episode_steps is not None:
            env = gym.wrappers.TimeLimit(env, int(max_episode_steps))
        return env

    construct.__name__ = env_id
    env = GymEnv(construct, num_envs, seed=seed)
    env.max_episode_steps = limit
    return env


class _ALEVectorFrames(VectorEnv):
    """ale_py's ``AtariVectorEnv`` reshaped to the ``GymEnv`` contract.

    It drops the frame-stack axis (``stack_num=1``: ``[N, 1, h, w(, 3)]`` -> ``[N, h, w, C]``),
    adds the ``_final_obs`` mask that the C++ env leaves out, and clips rewards here (ALE's own
    clipping is turned off) so the raw reward can be reported as ``infos["raw_reward"]``.
    """

    def __init__(self, venv: Any, clip_rewards: bool, grayscale: bool) -> None:
        self.venv = venv
        self.clip_rewards = bool(clip_rewards)
        self.grayscale = bool(grayscale)
        self.num_envs = int(venv.num_envs)
        shape = venv.single_observation_space.shape[1:] + ((1,) if grayscale else ())
        self.single_observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.single_action_space = venv.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)[:, 0]
        return obs[..., None] if self.grayscale else obs

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        obs, info = self.venv.reset(seed=seed, options=options)
        return self._frames(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, Any, Any, dict]:
        obs, reward, terminated, truncated, info = self.venv.step(np.asarray(actions, np.int32))
        raw = np.asarray(reward, np.float32)
        info = dict(info)
        info["raw_reward"] = raw
        if "final_obs" in info:
            info["final_obs"] = self._frames(info["final_obs"])
            info["_final_obs"] = np.logical_or(terminated, truncated)
        reward = np.sign(raw) if self.clip_rewards else raw
        return self._frames(obs), reward, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self.venv.close()


def minatar_id(game: str) -> str:
    """The MinAtar gym id (minimal action set, ``-v1``) for a game name: ``"breakout"`` ->
    ``"MinAtar/Breakout-v1"``, ``"space_invaders"`` -> ``"MinAtar/SpaceInvaders-v1"``."""
    table = {_norm(g): "MinAtar/" + g.title().replace("_", "") + "-v1" for g in MINATAR_GAMES}
    return _pick(game.removeprefix("MinAtar/").split("-v")[0], table, "MinAtar")


def make_minatar(
    game: str,
    num_envs: int,
    seed: int = 0,
    *,
    max_episode_steps: int | None = 10_000,
    sticky_action_prob: float = 0.1,
) -> GymEnv:
    """``num_envs`` MinAtar games (asterix, breakout, freeway, seaquest, space_invaders).

    Observations are ``(10, 10, C)`` uint8 0/1 (MinAtar's boolean channels, cast by ``GymEnv``);
    actions are the game's minimal action set (the ``-v1`` ids). The MinAtar gym ids have no
    step limit, so ``max_episode_steps`` (default 10,000; ``None``: none) adds gymnasium's
    ``TimeLimit``. ``sticky_action_prob`` is MinAtar's own (its default 0.1).
    """
    env_id = minatar_id(game)
    minatar_gym = _require("minatar.gym", "minatar")
    if env_id not in gym.registry:
        minatar_gym.register_envs()
    kwargs: dict[str, Any] = {"sticky_action_prob": float(sticky_action_prob)}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    return GymEnv(env_id, num_envs, seed=seed, **kwargs)
