"""Named hparams sets; importing this package registers them (see ``imagined_rl.registry``)."""

from imagined_rl.hparams import ppo, rlmb, world_models, world_models_rgb  # noqa: F401
