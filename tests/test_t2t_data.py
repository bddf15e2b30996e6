"""tensor2tensor's data layout on our side: ``style="t2t"`` writes t2t's names and fields, and
our readers read it, with or without a ``data_spec.json``, exactly as they read our own layout.

The t2t side (t2t's own reader and ``t2t-datagen``) is tested in the legacy venv:
``tests/test_t2t_bridge.py``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data
from imagined_rl.envs import Step, random_actions
from imagined_rl.envs.classic import CartPole
from imagined_rl.errors import UserError
from tests.test_data import FakeFrames

SHAPE = (21, 16, 3)
T2T_FIELDS = {"frame_number", "epoch", "image/encoded", "image/format", "image/height",
              "image/width", "action", "reward", "unclipped_reward", "done"}


class Frames(FakeFrames):
    """Random RGB frames with rewards in {-1, 0, 1} (t2t stores integer rewards), random ends."""

    def __init__(self, num_envs: int = 3):
        super().__init__(num_envs, SHAPE)

    def step(self, state: Any, action: tf.Tensor, key: tf.Tensor) -> tuple[Any, Step]:
        state, step = super().step(state, action, key)
        return state, step._replace(reward=tf.cast(action, tf.float32) - 1.0)


def record(data_dir: str, style: str, epochs: tuple[int, ...] = (0,)) -> None:
    env = Frames()
    for epoch in epochs:
        data.record(env, lambda obs, key: random_actions(env.action_spec, env.num_envs, key),
                    160, data_dir, seed=3, steps_per_shard=40, dev_fraction=0.25, epoch=epoch,
                    problem="gym_fake_random", style=style, progress=False)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[str, str]:
    """The same recording (two epochs) in our layout and in t2t's."""
    ours, t2t = (str(tmp_path_factory.mktemp(s)) for s in ("ours", "t2t"))
    record(ours, "imagined_rl", (0, 1))
    record(t2t, "t2t", (0, 1))
    return ours, t2t


def steps(data_dir: str, split_name: str = "train") -> list[dict[str, np.ndarray]]:
    return list(data.read_steps(data_dir, split_name).as_numpy_iterator())


def same_steps(ours: list[dict], theirs: list[dict]) -> None:
    """Frame for frame equal, episodes partitioned alike (ids differ: t2t has none)."""
    assert len(ours) == len(theirs) > 0
    ids: dict[int, int] = {}
    for a, b in zip(ours, theirs):
        for key in ("obs", "action", "reward", "unclipped_reward", "done", "frame_number",
                    "epoch", "is_final"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert b["terminated"] == b["done"]  # t2t keeps no terminated flag: done is terminal
        assert ids.setdefault(int(a["episode"]), int(b["episode"])) == int(b["episode"])
    assert len(set(ids.values())) == len(ids)


def test_t2t_style_writes_t2t_names_and_fields(dirs):
    _, t2t = dirs
    names = sorted(n for n in os.listdir(t2t) if n != data.SPEC_FILE)
    assert names == sorted(f"gym_fake_random-{s}-{i:05d}-of-{n:05d}.{e}" for e in (0, 1)
                           for s, n in (("dev", 1), ("train", 3)) for i in range(n))
    first = os.path.join(t2t, "gym_fake_random-train-00000-of-00003.0")
    raw = next(iter(tf.data.TFRecordDataset(first)))
    ex = tf.train.Example.FromString(raw.numpy()).features.feature
    assert set(ex) == T2T_FIELDS
    assert ex["reward"].int64_list.value and ex["image/format"].bytes_list.value == [b"png"]
    stored = [tf.train.Example.FromString(r.numpy()).features.feature["reward"].int64_list.value[0]
              for r in tf.data.TFRecordDataset(first)]
    assert set(stored) == {0, 1, 2}  # t2t's int(r - min_reward): rewards -1, 0, 1 as 0, 1, 2


@pytest.mark.parametrize("split_name", ["train", "dev"])
def test_read_steps_reads_t2t_style_as_ours(dirs, split_name):
    ours, t2t = dirs
    same_steps(steps(ours, split_name), steps(t2t, split_name))


def test_windows_and_frame_chunks_read_t2t_style_as_ours(dirs):
    ours, t2t = dirs
    kw = dict(history=3, batch_size=10_000, shuffle=False)
    a, b = (next(data.windows(d, "train", **kw).as_numpy_iterator()) for d in dirs)
    assert len(a["action"]) > 100
    for key in ("inputs", "action", "targets", "reward", "done", "frame_number"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(b["terminated"], b["done"])
    (obs_a, ep_a, fin_a), = data.frame_chunks(ours, "train", chunk=10_000)
    (obs_b, ep_b, fin_b), = data.frame_chunks(t2t, "train", chunk=10_000)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(fin_a, fin_b)
    np.testing.assert_array_equal(np.diff(ep_a) != 0, np.diff(ep_b) != 0)


def test_t2t_data_without_a_spec_is_inferred_and_read_alike(dirs, tmp_path, capsys):
    """What t2t-datagen leaves: shards in t2t's names and no data_spec.json."""
    ours, t2t = dirs
    bare = str(tmp_path / "bare")
    os.makedirs(bare)
    for name in os.listdir(t2t):
        if name != data.SPEC_FILE:
            tf.io.gfile.copy(os.path.join(t2t, name), os.path.join(bare, name))
    spec = data.load_spec(bare)
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r".*bare: no data_spec\.json, reading it as tensor2tensor data of "
                        r"gym_fake_random: 21x16x3 PNG frames, 3 actions \(largest recorded "
                        r"\+ 1\), reward = stored -1, epochs \[0, 1\]", line), line
    assert (spec.style, spec.obs_shape, spec.action) == ("t2t", SHAPE, {"kind": "discrete", "n": 3})
    same_steps(steps(ours), steps(bare))


def test_t2t_layout_errors_are_one_line(tmp_path):
    env = CartPole(num_envs=2)
    with pytest.raises(UserError, match=r"t2t's data layout holds PNG frames .* record it in "
                                        r"imagined_rl's layout"):
        data.record(env, lambda o, k: random_actions(env.action_spec, 2, k), 10,
                    str(tmp_path / "c"), seed=0, style="t2t", progress=False)
    with pytest.raises(UserError, match="unknown data style 'tf'"):
        data.record(env, lambda o, k: random_actions(env.action_spec, 2, k), 10,
                    str(tmp_path / "d"), seed=0, style="tf", progress=False)
    other = tmp_path / "other"
    other.mkdir()
    example = tf.train.Example(features=tf.train.Features(feature={
        "inputs": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    with tf.io.TFRecordWriter(str(other / "translate_ende-train-00000-of-00001.0")) as w:
        w.write(example.SerializeToString())
    with pytest.raises(UserError, match=r"cannot read .* as t2t gym data: no image/encoded, "
                                        r"action, reward, done, frame_number field"):
        data.load_spec(str(other))


def test_mixing_styles_in_one_dir_is_refused(dirs, tmp_path):
    d = str(tmp_path / "mixed")
    record(d, "t2t")
    with pytest.raises(UserError, match="holds data with data style t2t"):
        record(d, "imagined_rl", (1,))
