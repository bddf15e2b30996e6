"""Named problems; importing this package registers them (see ``imagined_rl.registry``)."""

from imagined_rl.problems import gym_problems  # noqa: F401
