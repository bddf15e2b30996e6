"""imagined_rl: a learned environment model and a PPO agent inside one TensorFlow graph."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

__version__ = "0.1.0"
