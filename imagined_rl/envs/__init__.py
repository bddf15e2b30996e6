"""Batch environments behind one functional contract (see ``core``)."""

from imagined_rl.envs.core import (
    BatchEnv,
    Box,
    Discrete,
    EnvCheckError,
    Environment,
    Step,
    check_env,
    make_key,
    normal,
    random_actions,
    split,
    uniform,
)

__all__ = [
    "BatchEnv",
    "Box",
    "Discrete",
    "EnvCheckError",
    "Environment",
    "Step",
    "check_env",
    "make_key",
    "normal",
    "random_actions",
    "split",
    "uniform",
]
