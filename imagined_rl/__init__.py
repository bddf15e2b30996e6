"""imagined_rl: a learned environment model and a PPO agent inside one TensorFlow graph."""

__version__ = "0.1.0"
