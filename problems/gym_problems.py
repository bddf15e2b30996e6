"""Named problems: an environment, its preprocessing and a data recipe, tensor2tensor-style.

``gym_<env>_random`` (classic control), ``gym_<game>_random`` (every ALE game, SimPLe's
preprocessing) and ``minatar_<game>_random`` record experience with a uniformly random policy;
``imagined-rl datagen --problem=NAME --policy_dir=RUN`` records with a trained PPO policy instead.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import imagined_rl
from imagined_rl.registry import register_problem

# tensor2tensor's Atari games plus defender, one per line: shared with the t2t bridge, which
# registers imagined_rl_gym_<game>_random for each and cannot import this package.
ATARI_GAMES = tuple(
    line.strip()
    for line in (pathlib.Path(imagined_rl.__file__).parent / "t2t_usr" / "atari_games.txt")
    .read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
CLASSIC = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "mountain_car": "MountainCar-v0",
           "pendulum": "Pendulum-v1"}


@dataclasses.dataclass
class Problem:
    """An env plus what to record from it. ``observation_kind`` tells world models what to expect:
    ``"vector"`` (float features), ``"grid"`` (binary 10x10xC) or ``"rgb"`` (uint8 frames)."""

    name: str
    env_id: str
    observation_kind: str
    num_steps: int  # default amount of experience to record (env steps)
    steps_per_shard: int
    num_envs: int = 8  # envs stepped in parallel while recording
    hparams_set: str = "ppo_base"  # the PPO set `train --problem=NAME` uses by default

    def make_env(self, num_envs: int, seed: int = 0) -> Any:
        raise NotImplementedError


@dataclasses.dataclass
class ClassicProblem(Problem):
    """Classic control, on the native in-graph env (which matches gymnasium step for step)."""

    def make_env(self, num_envs: int, seed: int = 0) -> Any:
        from imagined_rl import registry

        return registry.env(self.env_id)(num_envs=num_envs)


@dataclasses.dataclass
class AtariProblem(Problem):
    """An ALE game with SimPLe's preprocessing: 105x80 RGB, frame skip 4 with max-pooling, sticky
    actions, up to 30 no-op starts, rewards clipped to their sign (raw reward kept)."""

    game: str = "pong"
    frame_size: tuple[int, int] = (105, 80)  # SimPLe: 210x160 halved
    noop_max: int = 30

    def make_env(self, num_envs: int, seed: int = 0) -> Any:
        from imagined_rl.envs.atari import make_atari

        return make_atari(self.game, num_envs, seed=seed, frame_size=self.frame_size,
                          noop_max=self.noop_max)


@dataclasses.dataclass
class MinAtarProblem(Problem):
    """A MinAtar game: 10x10xC binary observations, minimal action set, episodes cut at
    ``max_episode_steps``; the native in-graph game (exact to the ``minatar`` package), or with
    ``native=False`` the ``minatar`` package itself through the gymnasium adapter."""

    game: str = "breakout"
    max_episode_steps: int = 10_000
    native: bool = True

    def make_env(self, num_envs: int, seed: int = 0) -> Any:
        if self.native:
            from imagined_rl import registry

            return registry.env(self.env_id)(num_envs=num_envs,
                                             max_episode_steps=self.max_episode_steps)
        from imagined_rl.envs.atari import make_minatar

        return make_minatar(self.game, num_envs, seed=seed,
                            max_episode_steps=self.max_episode_steps)


def _camel(game: str) -> str:
    """``space_invaders`` -> ``SpaceInvaders``, as the ALE and MinAtar ids spell games."""
    return "".join(part.title() for part in game.split("_"))


def _register(name: str, make: Any, doc: str) -> None:
    make.__doc__ = doc
    make.__name__ = name
    register_problem(name)(make)


for _short, _env_id in CLASSIC.items():
    _register(f"gym_{_short}_random",
              lambda n=f"gym_{_short}_random", e=_env_id: ClassicProblem(
                  n, e, "vector", num_steps=100_000, steps_per_shard=10_000,
                  hparams_set={"CartPole-v1": "ppo_cartpole",
                               "Pendulum-v1": "ppo_pendulum"}.get(e, "ppo_base")),
              f"{_env_id} (native, gymnasium-exact), random policy")

for _game in ATARI_GAMES:
    _register(f"gym_{_game}_random",
              lambda n=f"gym_{_game}_random", g=_game: AtariProblem(
                  n, f"ALE/{_camel(g)}-v5", "rgb", num_steps=100_000, steps_per_shard=5_000,
                  hparams_set="ppo_atari_base", game=g),
              f"Atari {_game}, SimPLe preprocessing (105x80 RGB), random policy")

for _game in MINATAR_GAMES:
    _register(f"minatar_{_game}_random",
              lambda n=f"minatar_{_game}_random", g=_game: MinAtarProblem(
                  n, f"MinAtar/{_camel(g)}-v1", "grid", num_steps=100_000, steps_per_shard=10_000,
                  hparams_set="ppo_minatar", game=g),
              f"MinAtar {_game} (10x10xC binary), random policy")
