"""tensor2tensor problems for data ``imagined-rl datagen`` wrote: ``--t2t_usr_dir`` for t2t.

    imagined-rl datagen --problem=gym_pong_random --data_dir=data/pong     # in our venv
    t2t-trainer --t2t_usr_dir=$(imagined-rl t2t_usr_dir) --data_dir=data/pong \\
        --problem=imagined_rl_gym_pong_random --model=next_frame_basic_deterministic \\
        --hparams_set=next_frame_tiny --schedule=train --output_dir=runs/t2t   # in t2t's venv

Registers ``imagined_rl_gym_<game>_random`` for every Atari game of our ``gym_<game>_random``
problems (``atari_games.txt``). Each reads a data dir of ours in either layout (``datagen``, or
``datagen --format=t2t``) and takes its frame shape and action count from our
``data_spec.json``; our float rewards become t2t's reward classes ``round(r) - min_reward``.
(Data written with ``--format=t2t`` can also be read by t2t's own ``gym_<game>_random``.)

Standalone on purpose: ``t2t-trainer`` imports this directory as a top-level module, never its
parent package, and t2t's last release (1.15.7) lives on a legacy stack (TF 2.15) where
``imagined_rl`` cannot be imported, so this imports only tensor2tensor, TF and the standard
library. ``t2t-datagen`` on these problems records nothing: it prints the ``imagined-rl
datagen`` command that does.
"""

from __future__ import annotations

import json
import os

import gym
import tensorflow.compat.v1 as tf
from absl import flags
from tensor2tensor.data_generators import gym_env, problem
from tensor2tensor.utils import contrib, registry

SPEC_FILE = "data_spec.json"
PREFIX = "imagined_rl_"
with open(os.path.join(os.path.dirname(__file__), "atari_games.txt")) as _f:
    GAMES = tuple(line.strip() for line in _f if line.strip() and not line.startswith("#"))


class RecordedProblem(gym_env.EnvSimulationProblem):
    """Frames, actions, rewards and done flags of one of our recorded problems, for t2t's video
    models. ``ours`` is our problem's name (``gym_pong_random``)."""

    ours = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._specs = {}
        self._data_dir = None  # the last data dir asked about: properties have no data_dir

    # -- the spec: everything shape-like is read from data_spec.json of the data dir ----------
    def spec(self, data_dir=None):
        """Our ``data_spec.json`` of ``data_dir`` (default: the last one asked about, else
        ``--data_dir``)."""
        data_dir = data_dir or self._data_dir or flags.FLAGS.data_dir
        self._data_dir = data_dir
        if data_dir not in self._specs:
            path = os.path.join(data_dir, SPEC_FILE)
            if not tf.gfile.Exists(path):
                raise ValueError(f"no {SPEC_FILE} in {data_dir}: record the data there first: "
                                 f"{self._datagen_command(data_dir)}")
            with tf.gfile.GFile(path) as f:
                spec = json.load(f)
            if spec["problem"] != self.ours or spec["action"]["kind"] != "discrete":
                raise ValueError(f"{data_dir} holds data of {spec['problem']}, not {self.ours}")
            self._specs[data_dir] = spec
        return self._specs[data_dir]

    def _datagen_command(self, data_dir):
        return f"imagined-rl datagen --problem={self.ours} --data_dir={data_dir}"

    @property
    def action_space(self):
        return gym.spaces.Discrete(int(self.spec()["action"]["n"]))

    @property
    def frame_height(self):
        return int(self.spec()["observation"]["shape"][0])

    @property
    def frame_width(self):
        return int(self.spec()["observation"]["shape"][1])

    @property
    def num_channels(self):
        return int(self.spec()["observation"]["shape"][2])

    @property
    def total_number_of_frames(self):
        return 0  # only t2t-datagen asks, and it does not record here

    @property
    def is_generate_per_split(self):
        return False

    @property
    def only_keep_videos_from_0th_frame(self):
        return False  # as t2t's T2TEnv: any consecutive frames of an episode make a video

    def hparams(self, defaults, model_hparams):
        self.spec(getattr(model_hparams, "data_dir", None))
        super().hparams(defaults, model_hparams)

    # -- files and fields ---------------------------------------------------------------------
    def _t2t_style(self, data_dir=None):
        return self.spec(data_dir).get("style", "imagined_rl") == "t2t"

    def filepattern(self, data_dir, mode, shard=None):
        split = "train" if mode == problem.DatasetSplit.TRAIN else "dev"
        if self._t2t_style(data_dir):
            return os.path.join(data_dir, f"{self.ours}-{split}*")
        return os.path.join(data_dir, f"{split}-*.tfrecord")

    @property
    def extra_reading_spec(self):
        reward = tf.int64 if self._t2t_style() else tf.float32
        fields = {name: tf.FixedLenFeature([1], tf.int64)
                  for name in ("frame_number", "action", "done")}
        fields["reward"] = tf.FixedLenFeature([1], reward)
        decoders = {name: contrib.slim().tfexample_decoder.Tensor(tensor_key=name)
                    for name in fields}
        return fields, decoders

    def preprocess_example(self, example, mode, hparams):
        if example["reward"].dtype != tf.int64:  # our float reward -> t2t's reward class
            low, high = self.reward_range
            reward = tf.clip_by_value(tf.round(example["reward"]), low, high)
            example["reward"] = tf.cast(reward, tf.int64) - low
        return super().preprocess_example(example, mode, hparams)

    def generate_data(self, data_dir, tmp_dir=None, task_id=-1):
        raise SystemExit(f"{self.name} reads what imagined-rl records; record it with "
                         f"{self._datagen_command(data_dir)} (in imagined_rl's environment)")


def _register(game: str) -> None:
    ours = f"gym_{game}_random"
    name = PREFIX + ours
    cls = type(name, (RecordedProblem,), {
        "ours": ours,
        "__doc__": f"Atari {game}: data of imagined_rl's {ours} (imagined-rl datagen).",
    })
    registry.register_problem(name)(cls)


for _game in GAMES:
    _register(_game)
