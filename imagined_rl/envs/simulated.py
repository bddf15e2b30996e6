"""A world model behind the batch-env contract: imagination that PPO trains in, unchanged.

``SimulatedBatchEnv`` starts every imagined episode from a real window of ``history`` frames
sampled from a :class:`FrameStore` (SimPLe's random starts), steps the world model's ``predict``
for at most ``max_episode_steps`` (SimPLe's rollout horizon), and ends an episode where the model
predicts termination. Its state is the frame window, a tensor, so the whole imagined rollout runs
inside PPO's compiled ``tf.while_loop`` with no host round trip.

The start frames live on the device, once: the store holds every recorded frame (uint8 for
images) in a preallocated variable beside the index of the frames a valid window ends on, and a
reset gathers windows from it in the graph. Nothing of the data is a graph constant, so the
graph stays small whatever the data size (SimPLe's 100k Atari frames are 2.5 GB), and the store
grows each loop epoch (``add``) under the same compiled PPO program.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from imagined_rl.envs.core import Box, Discrete, Environment, Key, State, uniform
from imagined_rl.errors import UserError
from imagined_rl.world_models.base import WorldModel


class FrameStore(tf.Module):
    """Recorded frames on the device, and the windows of ``history`` frames inside one episode.

    ``add(obs, episode, is_final)`` appends frames in file order (any chunking: windows across
    chunk boundaries are found), with each frame's episode id and whether it is its episode's
    last; ``sample(n, key)`` draws ``n`` windows ``[n, history, *obs_shape]`` uniformly among
    the valid ones: ``history`` consecutive frames of one episode, the last not its final frame
    (an imagined episode must be able to take a step from it). ``capacity`` frames are allocated
    up front, so the variables never change shape and a compiled program that samples keeps
    working as the store grows; adding past it is a one-line error.
    """

    def __init__(self, obs_shape: Iterable[int], dtype: tf.DType | str, history: int,
                 capacity: int, name: str = "frame_store"):
        super().__init__(name=name)
        self.obs_shape, self.dtype = tuple(int(d) for d in obs_shape), tf.as_dtype(dtype)
        self.history, self.capacity = int(history), int(capacity)
        if self.history < 1 or self.capacity < 1:
            raise UserError(f"FrameStore needs history >= 1 and capacity >= 1, got "
                            f"{history} and {capacity}")
        with tf.init_scope():
            self.frames = tf.Variable(tf.zeros([self.capacity, *self.obs_shape], self.dtype),
                                      trainable=False, name="frames")
            self.episode = tf.Variable(tf.fill([self.capacity], tf.constant(-1, tf.int64)),
                                       trainable=False, name="episode")
            self.ends = tf.Variable(tf.zeros([self.capacity], tf.int32), trainable=False,
                                    name="window_ends")
            self.size = tf.Variable(0, trainable=False, name="size")
            self.num_windows = tf.Variable(0, trainable=False, name="num_windows")

    @classmethod
    def from_chunks(cls, chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    history: int, capacity: int | None = None) -> FrameStore:
        """A store holding ``chunks`` (``data.frame_chunks``); ``capacity`` defaults to their
        total (the chunks are then held on the host until the store is built)."""
        chunks = list(chunks) if capacity is None else chunks
        store = None
        for obs, episode, final in chunks:
            if store is None:
                total = capacity or sum(len(c[0]) for c in chunks)
                store = cls(obs.shape[1:], obs.dtype, history, total)
            store.add(obs, episode, final)
        if store is None:
            raise UserError("no frames to start imagined episodes from: record data first")
        return store

    def add(self, obs: np.ndarray, episode: np.ndarray, is_final: np.ndarray) -> None:
        """Appends frames (in recorded order) and indexes the new windows."""
        n, start = len(obs), int(self.size.numpy())
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise UserError(f"frames of shape {list(obs.shape[1:])} added to a store of "
                            f"{list(self.obs_shape)}")
        if start + n > self.capacity:
            raise UserError(f"FrameStore is full: {start} + {n} frames > capacity "
                            f"{self.capacity}; build it with a larger capacity")
        rows = tf.range(start, start + n)  # scatter writes in place (a slice assign copies)
        self.frames.scatter_update(tf.IndexedSlices(tf.convert_to_tensor(obs, self.dtype), rows))
        self.episode.scatter_update(tf.IndexedSlices(tf.convert_to_tensor(episode, tf.int64),
                                                     rows))
        k = self.history
        ends = tf.range(max(start, k - 1), start + n)  # a window ends on one of the new frames
        first = tf.gather(self.episode, ends - (k - 1))
        valid = tf.equal(first, tf.gather(self.episode, ends)) & tf.logical_not(
            tf.gather(tf.convert_to_tensor(is_final, tf.bool), ends - start))
        new = tf.boolean_mask(ends, valid)
        m, count = int(self.num_windows.numpy()), int(tf.size(new))
        self.ends.scatter_update(tf.IndexedSlices(new, tf.range(m, m + count)))
        self.size.assign(start + n)
        self.num_windows.assign(m + count)

    def sample(self, n: int, key: Key) -> tf.Tensor:
        """``n`` windows ``[n, history, *obs_shape]`` drawn uniformly among the valid ones."""
        i = uniform(key, [n], 0, tf.maximum(self.num_windows, 1), dtype=tf.int32)
        ends = tf.gather(self.ends, i)
        return tf.gather(self.frames, ends[:, None] + tf.range(1 - self.history, 1))


class SimulatedBatchEnv(Environment):
    """``num_envs`` imagined copies of the env a world model learned.

    Args:
      model: a trained :class:`~imagined_rl.world_models.base.WorldModel`.
      starts: a :class:`FrameStore` of real frames with ``history = model.history``.
      num_envs: imagined envs stepped together.
      max_episode_steps: the imagination horizon; episodes are truncated there.
      frame_stack: the observation is the window's last ``frame_stack`` frames, concatenated on
        the last axis oldest first (as :class:`~imagined_rl.envs.core.FrameStack` stacks real
        frames); 1 (the default) is the last frame alone.
    """

    def __init__(self, model: WorldModel, starts: FrameStore, num_envs: int,
                 max_episode_steps: int = 50, frame_stack: int = 1):
        super().__init__(num_envs, max_episode_steps)
        spec = model.spec
        if (starts.history, *starts.obs_shape) != (model.history, *spec.obs_shape):
            raise UserError(f"start windows have shape {[starts.history, *starts.obs_shape]}, "
                            f"the model needs {[model.history, *spec.obs_shape]}")
        if int(starts.num_windows.numpy()) == 0:
            raise UserError(f"no recorded episode has {model.history} frames before its last to "
                            "start an imagined episode from: record more (or longer) episodes")
        if not 1 <= int(frame_stack) <= model.history:
            raise UserError(f"frame_stack={frame_stack}: imagination can stack 1 to the model's "
                            f"history ({model.history}) frames")
        self.model, self.starts, self.frame_stack = model, starts, int(frame_stack)
        shape = (*spec.obs_shape[:-1], spec.obs_shape[-1] * self.frame_stack)
        self.observation_spec = tf.TensorSpec(shape, tf.as_dtype(spec.obs_dtype))
        if spec.discrete:
            self.action_spec = Discrete(int(spec.action["n"]))
        else:
            self.action_spec = Box(tuple(spec.action["low"]), tuple(spec.action["high"]),
                                   tuple(spec.action["shape"]))

    @property
    def name(self) -> str:
        return f"Simulated[{type(self.model).__name__}:{self.model.spec.problem}]"

    def observe(self, window: tf.Tensor) -> tf.Tensor:
        """The observation of a window ``[N, history, *obs]``: its last ``frame_stack`` frames
        concatenated on the last axis."""
        last = tf.unstack(window[:, -self.frame_stack:], axis=1)
        return last[0] if len(last) == 1 else tf.concat(last, axis=-1)

    def reset_env(self, key: Key) -> tuple[State, tf.Tensor]:
        window = self.starts.sample(self.num_envs, key)
        return window, self.observe(window)

    def step_env(self, state: State, action: tf.Tensor, key: Key):
        next_obs, reward, done = self.model.predict(state, action, key)
        window = tf.concat([state[:, 1:], next_obs[:, None]], axis=1)
        return window, self.observe(window), reward, done
