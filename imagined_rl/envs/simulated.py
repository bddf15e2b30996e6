"""A world model behind the batch-env contract: imagination that PPO trains in, unchanged.

``SimulatedBatchEnv`` starts every imagined episode from a real window of ``history`` frames
sampled from recorded data (SimPLe's random starts), steps the world model's ``predict`` for at
most ``max_episode_steps`` (SimPLe's rollout horizon), and ends an episode where the model
predicts termination. Its state is the frame window, a tensor, so the whole imagined rollout runs
inside PPO's compiled ``tf.while_loop`` with no host round trip.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from imagined_rl import data
from imagined_rl.envs.core import Box, Discrete, Environment, Key, State
from imagined_rl.errors import UserError
from imagined_rl.world_models.base import WorldModel


def start_windows(data_dir: str, history: int, split_name: str = "train",
                  max_windows: int = 100_000) -> np.ndarray:
    """Every window of ``history`` consecutive frames inside one recorded episode (up to
    ``max_windows``, evenly spaced): the real states imagined episodes start from."""
    frames: dict[int, list[np.ndarray]] = {}
    for step in data.read_steps(data_dir, split_name).as_numpy_iterator():
        frames.setdefault(int(step["episode"]), []).append(step["obs"])
    episodes = list(frames.values())
    where = [(e, t) for e, ep in enumerate(episodes)
             for t in range(history - 1, len(ep) - 1)]  # not an episode's final frame
    if not where:
        raise UserError(f"no {split_name} episode in '{data_dir}' has {history} frames to "
                        "start an imagined episode from")
    idx = np.linspace(0, len(where) - 1, min(max_windows, len(where))).round().astype(int)
    return np.stack([np.stack(episodes[e][t - history + 1:t + 1])
                     for e, t in (where[i] for i in idx)])


class SimulatedBatchEnv(Environment):
    """``num_envs`` imagined copies of the env a world model learned.

    Args:
      model: a trained :class:`~imagined_rl.world_models.base.WorldModel`.
      starts: real frame windows ``[M, history, *obs_shape]`` (see :func:`start_windows`).
      num_envs: imagined envs stepped together.
      max_episode_steps: the imagination horizon; episodes are truncated there.
    """

    def __init__(self, model: WorldModel, starts: np.ndarray, num_envs: int,
                 max_episode_steps: int = 50):
        super().__init__(num_envs, max_episode_steps)
        spec = model.spec
        if starts.shape[1:] != (model.history, *spec.obs_shape):
            raise UserError(f"start windows have shape {list(starts.shape[1:])}, the model needs "
                            f"{[model.history, *spec.obs_shape]}")
        self.model = model
        self.starts = tf.constant(starts)
        self.observation_spec = tf.TensorSpec(spec.obs_shape, tf.as_dtype(spec.obs_dtype))
        if spec.discrete:
            self.action_spec = Discrete(int(spec.action["n"]))
        else:
            self.action_spec = Box(tuple(spec.action["low"]), tuple(spec.action["high"]),
                                   tuple(spec.action["shape"]))

    @property
    def name(self) -> str:
        return f"Simulated[{type(self.model).__name__}:{self.model.spec.problem}]"

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        idx = tf.random.stateless_uniform([self.num_envs], key, 0, tf.shape(self.starts)[0],
                                          dtype=tf.int32)
        window = tf.gather(self.starts, idx)
        return window, window[:, -1]

    def step_env(self, state: State, action: tf.Tensor, key: Key):
        next_obs, reward, done = self.model.predict(state, action, key)
        window = tf.concat([state[:, 1:], next_obs[:, None]], axis=1)
        return window, next_obs, reward, done
