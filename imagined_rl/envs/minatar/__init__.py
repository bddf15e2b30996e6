"""The five MinAtar games as native, XLA-compilable batch envs, exact to the ``minatar`` package.

Registered under MinAtar's own gymnasium ids, so ``--env MinAtar/Breakout-v1``, the
``minatar_<game>_random`` problems and datagen step these in the graph rather than the
``minatar`` package through the adapter: ``-v1`` uses the game's minimal action set, ``-v0``
all six actions. Like those ids, no time limit unless ``max_episode_steps`` is given.
"""

from __future__ import annotations

import functools

from imagined_rl.envs.minatar.asterix import Asterix
from imagined_rl.envs.minatar.base import MinAtar
from imagined_rl.envs.minatar.breakout import Breakout
from imagined_rl.envs.minatar.freeway import Freeway
from imagined_rl.envs.minatar.seaquest import Seaquest
from imagined_rl.envs.minatar.space_invaders import SpaceInvaders
from imagined_rl.registry import register_env

GAMES: dict[str, type[MinAtar]] = {
    "asterix": Asterix,
    "breakout": Breakout,
    "freeway": Freeway,
    "seaquest": Seaquest,
    "space_invaders": SpaceInvaders,
}


def env_id(game: str, version: int = 1) -> str:
    """``"space_invaders"`` -> ``"MinAtar/SpaceInvaders-v1"`` (MinAtar's gymnasium id)."""
    return f"MinAtar/{game.title().replace('_', '')}-v{version}"


for _game, _cls in GAMES.items():
    for _version in (0, 1):
        _make = functools.partial(_cls, minimal_action_set=bool(_version))
        _make.__doc__ = _cls.__doc__
        register_env(env_id(_game, _version))(_make)

__all__ = ["GAMES", "Asterix", "Breakout", "Freeway", "MinAtar", "Seaquest", "SpaceInvaders",
           "env_id"]
