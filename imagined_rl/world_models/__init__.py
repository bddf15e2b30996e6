"""World models: one module per family, each registered by name (``registry.model``).

Importing this package registers every family: ``vector_ensemble`` (classic control),
``grid_conv`` (MinAtar), ``next_frame_basic_deterministic`` and
``next_frame_basic_stochastic_discrete`` (Atari frames, SimPLe's models).
"""

from imagined_rl.world_models import grid, rgb, vector  # noqa: F401
