"""imagined_rl: a learned environment model and a PPO agent inside one TensorFlow graph."""

import importlib.metadata
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr


def _tf_version() -> tuple[int, int]:
    """The installed TensorFlow's (major, minor), read without importing it; (0, 0): none."""
    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tensorflow-macos"):
        try:
            major, minor = importlib.metadata.version(dist).split(".")[:2]
            return int(major), int(minor)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return 0, 0


# XLA:CPU defaults for TF 2.21+, each added to XLA_FLAGS unless the user set that flag: dots
# through YNNPACK (as JAX's XLA does by default), not Eigen -- PPO's small dense layers ~6%
# faster, compile no slower (bench/README.md, "What moved the figures", which also says why
# --xla_cpu_use_fusion_emitters=false is not here: compile ~0.5 s shorter, 8 agents ~15-20%
# slower). Read when TF first compiles with XLA, so they apply where imagined_rl is imported
# first. TF 2.20's XLA does not know the flag and aborts on unknown ones: 2.21 and later only.
XLA_DEFAULTS = {"--xla_cpu_experimental_ynn_fusion_type": "dot"}
# XLA_FLAGS as the user set them, for children on another XLA; a child of a process that added
# our flags inherits the user's value under _MARK (so its own children get it too)
_MARK = "IMAGINED_RL_USER_XLA_FLAGS"
_USER_XLA_FLAGS = os.environ.get(_MARK, os.environ.get("XLA_FLAGS")) or None
_ADD = [f"{k}={v}" for k, v in XLA_DEFAULTS.items() if k not in os.environ.get("XLA_FLAGS", "")]
if _tf_version() >= (2, 21) and _ADD:
    os.environ.setdefault(_MARK, os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_ADD]).strip()


def foreign_env() -> dict[str, str]:
    """``os.environ`` with ``XLA_FLAGS`` as it was before this package set its own: for child
    processes on another XLA (JAX, TF 2.15/2.20 venvs), which abort on flags they do not know."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", _MARK)}
    if _USER_XLA_FLAGS is not None:
        env["XLA_FLAGS"] = _USER_XLA_FLAGS
    return env


__version__ = "0.1.0"
