"""Recorded experience on disk (``imagined_rl.data``).

Round trips are checked against an independent reconstruction of what the env produced: the
``on_step`` hook sees every batch step, the test splits that stream into episodes itself, applies
the documented shard rule (episodes begun before the shard reached ``steps_per_shard``
transitions are kept, later ones dropped) and compares every stored frame bit for bit. The other
tests cover windows (never across episodes, targets are the next frame, final frames included),
kill-and-resume (byte-identical files), corrupt shards and missing data (one-line ``UserError``).
"""

from __future__ import annotations

import collections
import os
import shutil
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data
from imagined_rl.envs import BatchEnv, Discrete, Step, random_actions, split
from imagined_rl.envs.classic import CartPole, Pendulum
from imagined_rl.errors import UserError


def random_policy(env: BatchEnv):
    return lambda obs, key: random_actions(env.action_spec, env.num_envs, key)


class FakeFrames(BatchEnv):
    """Random frames of any shape/dtype; episodes end at random (terminated) or at a limit."""

    def __init__(self, num_envs: int, shape: tuple[int, ...], dtype: tf.DType = tf.uint8,
                 high: int = 256, max_episode_steps: int = 12, p_end: float = 0.1):
        self.num_envs = num_envs
        self.observation_spec = tf.TensorSpec(shape, dtype)
        self.action_spec = Discrete(3)
        self.max_episode_steps = max_episode_steps
        self.high = high
        self.p_end = p_end

    def _frames(self, key: tf.Tensor) -> tf.Tensor:
        shape = [self.num_envs, *self.observation_spec.shape]
        ints = tf.random.stateless_uniform(shape, key, 0, self.high, tf.int32)
        return tf.cast(ints, self.observation_spec.dtype)

    def reset(self, key: tf.Tensor) -> tuple[Any, tf.Tensor]:
        return {"t": tf.zeros([self.num_envs], tf.int32)}, self._frames(key)

    def step(self, state: Any, action: tf.Tensor, key: tf.Tensor) -> tuple[Any, Step]:
        k_obs, k_end, k_reset = tf.unstack(split(key, 3))
        final = self._frames(k_obs)
        t = state["t"] + 1
        terminated = tf.random.stateless_uniform([self.num_envs], k_end) < self.p_end
        truncated = (t >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        mask = tf.reshape(done, [-1] + [1] * len(self.observation_spec.shape))
        obs = tf.where(mask, self._frames(k_reset), final)
        reward = tf.cast(action, tf.float32) * 0.5 - 0.25
        return {"t": tf.where(done, 0, t)}, Step(obs, reward, terminated, truncated, final)


class Capture:
    """The ``on_step`` hook: keeps every transition, optionally 'dies' at a given point."""

    def __init__(self, die_at: tuple[int, int] | None = None):
        self.steps: dict[int, list[dict[str, np.ndarray]]] = collections.defaultdict(list)
        self.die_at = die_at

    def __call__(self, shard: int, transition: dict[str, np.ndarray]) -> None:
        if self.die_at is not None and (shard, len(self.steps[shard])) == self.die_at:
            raise Killed
        self.steps[shard].append({k: np.array(v) for k, v in transition.items()})


class Killed(Exception):
    pass


def expected_episodes(steps: list[dict[str, np.ndarray]], steps_per_shard: int,
                      finish: bool = True) -> list[dict]:
    """The episodes one shard must hold, rebuilt from its raw env steps, in the written order
    (by the step they end, then env index)."""
    n = len(steps[0]["reward"])
    new = lambda obs, start: {"obs": [obs], "action": [], "reward": [0.0], "unclipped": [0.0],
                              "start": start}
    current = [new(steps[0]["obs"][i], -1) for i in range(n)]
    finished = []
    for s, tr in enumerate(steps):
        for i in range(n):
            ep = current[i]
            ep["action"].append(tr["action"][i])
            ep["obs"].append(tr["final_obs"][i])
            ep["reward"].append(tr["reward"][i])
            ep["unclipped"].append(tr["unclipped_reward"][i])
            if tr["terminated"][i] or tr["truncated"][i]:
                ep["terminated"], ep["end"] = bool(tr["terminated"][i]), s
                finished.append(ep)
                current[i] = new(tr["next_obs"][i], s)
    if not finish:  # a fixed-length rollout; running episodes are cut, as truncated
        assert len(steps) == -(-steps_per_shard // n)
        cut_short = [dict(ep, terminated=False) for ep in current if ep["action"]]
        return finished + cut_short
    total, cut = 0, None
    for s in range(len(steps)):
        total += sum(len(ep["action"]) for ep in finished if ep["end"] == s)
        if total >= steps_per_shard:
            cut = s
            break
    assert cut is not None, "the recorder stopped before the shard was full"
    kept = [ep for ep in finished if ep["start"] < cut]
    unfinished = [ep for ep in current if ep["start"] < cut]
    assert not unfinished, "the recorder stopped before the running episodes ended"
    assert sum(len(ep["action"]) for ep in kept) >= steps_per_shard
    return kept


def read_episodes(data_dir: str, splits=("train", "dev")) -> dict[int, list[dict]]:
    """Stored episodes as lists of numpy step dicts, by episode id."""
    episodes: dict[int, list[dict]] = collections.defaultdict(list)
    for name in splits:
        for rec in data.read_steps(data_dir, name).as_numpy_iterator():
            episodes[int(rec["episode"])].append(rec)
    return episodes


def bits(x: Any) -> bytes:
    return np.ascontiguousarray(x).tobytes()


def check_round_trip(data_dir: str, capture: Capture, steps_per_shard: int,
                     discrete: bool, finish: bool = True) -> int:
    """Every stored episode equals the env's, bit for bit; returns the number of episodes."""
    stored = read_episodes(data_dir)
    want = {
        (shard, k): ep
        for shard, steps in capture.steps.items()
        for k, ep in enumerate(expected_episodes(steps, steps_per_shard, finish))
    }
    got = {((eid // 10**6) % 10**6, eid % 10**6): recs for eid, recs in stored.items()}
    assert sorted(got) == sorted(want)
    for key, ep in want.items():
        recs = got[key]
        T = len(ep["action"])
        assert [int(r["frame_number"]) for r in recs] == list(range(T + 1))
        for t, r in enumerate(recs):
            assert bits(r["obs"]) == bits(ep["obs"][t]), (key, t)
            assert r["obs"].dtype == ep["obs"][t].dtype
            assert np.float32(r["reward"]) == np.float32(ep["reward"][t])
            assert np.float32(r["unclipped_reward"]) == np.float32(ep["unclipped"][t])
            assert bool(r["done"]) == bool(r["is_final"]) == (t == T)
            assert bool(r["terminated"]) == (t == T and ep["terminated"])
            if t < T:
                a = ep["action"][t]
                assert bits(r["action"]) == bits(a.astype(np.int32) if discrete else a)
            else:  # the documented placeholder
                assert not np.any(r["action"])
    return len(want)


# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> tuple[str, Capture, data.RecordSummary]:
    """Native CartPole, 4 envs, random policy, ~3000 steps in 3 shards (2 train, 1 dev)."""
    data_dir = str(tmp_path_factory.mktemp("cartpole"))
    env = CartPole(num_envs=4)
    capture = Capture()
    summary = data.record(env, random_policy(env), 3000, data_dir, seed=7,
                          steps_per_shard=1000, dev_fraction=0.3, progress=False,
                          on_step=capture)
    return data_dir, capture, summary


def test_cartpole_round_trip_bit_for_bit(cartpole):
    data_dir, capture, summary = cartpole
    assert summary.shards_written == 3 and summary.shards_skipped == 0
    assert summary.steps >= 3000
    names = sorted(os.listdir(data_dir))
    assert names == [
        "data_spec.json",
        "dev-00000-of-00001.epoch0.tfrecord",
        "train-00000-of-00002.epoch0.tfrecord",
        "train-00001-of-00002.epoch0.tfrecord",
    ]
    episodes = check_round_trip(data_dir, capture, 1000, discrete=True)
    assert episodes == summary.episodes > 50
    spec = data.load_spec(data_dir)
    assert (spec.obs_shape, spec.obs_dtype, spec.obs_encoding) == ((4,), "float32", "float")
    assert spec.action == {"kind": "discrete", "n": 2}
    assert spec.epochs["0"]["seed"] == 7


def test_fixed_length_shards_cut_running_episodes(tmp_path):
    env = CartPole(num_envs=3)
    capture = Capture()
    summary = data.record(env, random_policy(env), 200, str(tmp_path), seed=2,
                          steps_per_shard=100, dev_fraction=0.5, finish_episodes=False,
                          progress=False, on_step=capture)
    assert summary.steps == 2 * 102  # 34 steps of 3 envs per shard
    check_round_trip(str(tmp_path), capture, 100, discrete=True, finish=False)


def test_box_actions_reward_clip_and_truncation_round_trip(tmp_path):
    env = Pendulum(num_envs=2, max_episode_steps=30)  # every episode is truncated
    capture = Capture()
    data.record(env, random_policy(env), 120, str(tmp_path), seed=3, steps_per_shard=60,
                dev_fraction=0.5, reward_clip=(-2.0, -0.5), progress=False, on_step=capture)
    check_round_trip(str(tmp_path), capture, 60, discrete=False)
    steps = [r for eps in read_episodes(str(tmp_path)).values() for r in eps]
    rewards = np.array([r["reward"] for r in steps if r["frame_number"] > 0])
    unclipped = np.array([r["unclipped_reward"] for r in steps if r["frame_number"] > 0])
    assert rewards.min() >= -2.0 and rewards.max() <= -0.5 and unclipped.min() < -2.0
    assert not any(r["terminated"] for r in steps) and sum(r["done"] for r in steps) >= 4
    batch = next(data.windows(str(tmp_path), "dev", history=2, batch_size=8).as_numpy_iterator())
    assert batch["action"].shape == (8, 1) and batch["action"].dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "dtype", "high", "encoding"),
    [
        ((105, 80, 3), tf.uint8, 256, "png"),  # Atari frames (SimPLe's size)
        ((10, 10, 4), tf.uint8, 2, "bytes"),  # MinAtar-style binary grid, C > 3
        ((10, 10, 6), tf.bool, 2, "bytes"),
    ],
)
def test_image_and_grid_round_trip(tmp_path, shape, dtype, high, encoding):
    env = FakeFrames(num_envs=3, shape=shape, dtype=dtype, high=high)
    capture = Capture()
    data.record(env, random_policy(env), 160, str(tmp_path), seed=5, steps_per_shard=80,
                dev_fraction=0.5, progress=False, on_step=capture)
    assert data.load_spec(str(tmp_path)).obs_encoding == encoding
    check_round_trip(str(tmp_path), capture, 80, discrete=True)

    # The raw records carry tensor2tensor's gym fields, with t2t's types.
    raw = next(iter(tf.data.TFRecordDataset(data.shard_files(str(tmp_path), "train"))))
    t2t = {name: tf.io.FixedLenFeature([1], tf.int64)
           for name in ("frame_number", "epoch", "action", "done")}
    t2t["unclipped_reward"] = tf.io.FixedLenFeature([1], tf.float32)
    if encoding == "png":
        t2t |= {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/format": tf.io.FixedLenFeature([], tf.string),
                "image/height": tf.io.FixedLenFeature([1], tf.int64),
                "image/width": tf.io.FixedLenFeature([1], tf.int64)}
    else:
        t2t |= {"observation/bytes": tf.io.FixedLenFeature([], tf.string),
                "observation/shape": tf.io.FixedLenFeature([3], tf.int64)}
    ex = tf.io.parse_single_example(raw, t2t)
    if encoding == "png":
        assert ex["image/format"].numpy() == b"png"
        assert [int(ex["image/height"][0]), int(ex["image/width"][0])] == list(shape[:2])
    else:
        assert list(ex["observation/shape"].numpy()) == list(shape)

    # Windows of decoded frames, in file order: the first ones of the train split.
    frames = list(data.read_steps(str(tmp_path), "train").as_numpy_iterator())
    starts = [i for i in range(len(frames) - 2)
              if frames[i]["episode"] == frames[i + 2]["episode"]][:4]
    batch = next(data.windows(str(tmp_path), "train", history=2, batch_size=4,
                              shuffle=False).as_numpy_iterator())
    assert batch["inputs"].shape == (4, 2, *shape)
    assert batch["inputs"].dtype == frames[0]["obs"].dtype
    for i, s in enumerate(starts):
        assert bits(batch["inputs"][i]) == bits(np.stack([frames[s]["obs"], frames[s + 1]["obs"]]))
        assert bits(batch["targets"][i]) == bits(frames[s + 2]["obs"])


def test_windows_stay_inside_episodes_and_target_the_next_frame(cartpole):
    data_dir, _, _ = cartpole
    k = 3
    frames = {(int(r["episode"]), int(r["frame_number"])): r
              for r in data.read_steps(data_dir, "train").as_numpy_iterator()}
    lengths = collections.Counter(e for e, _ in frames)
    want = sum(max(0, n - k) for n in lengths.values())  # n frames -> n - k windows

    ds = data.windows(data_dir, "train", history=k, batch_size=64, shuffle=True, seed=1)
    seen = set()
    done_windows = 0
    for batch in ds.as_numpy_iterator():
        assert batch["inputs"].shape[1:] == (k, 4) and batch["targets"].shape[1:] == (4,)
        for i in range(len(batch["action"])):
            e, t = int(batch["episode"][i]), int(batch["frame_number"][i])
            for j in range(k):  # inputs are frames t-k+1 .. t of this very episode
                assert bits(batch["inputs"][i, j]) == bits(frames[(e, t - k + 1 + j)]["obs"])
            nxt = frames[(e, t + 1)]
            assert bits(batch["targets"][i]) == bits(nxt["obs"])
            assert batch["action"][i] == frames[(e, t)]["action"]
            assert batch["reward"][i] == nxt["reward"]
            assert batch["done"][i] == nxt["done"] and batch["terminated"][i] == nxt["terminated"]
            done_windows += bool(batch["done"][i])
            seen.add((e, t))
    assert len(seen) == want  # every window once
    assert done_windows == sum(n > k for n in lengths.values())  # final frames are targets

    # Deterministic: shuffle=False is file order; a seed fixes the shuffled order.
    def order(**kw):
        ds = data.windows(data_dir, "train", history=k, batch_size=500, **kw)
        return [(int(e), int(t)) for b in ds.as_numpy_iterator()
                for e, t in zip(b["episode"], b["frame_number"])]

    in_order = order(shuffle=False)
    assert in_order == sorted(in_order) == order(shuffle=False)
    assert order(shuffle=True, seed=1) == order(shuffle=True, seed=1) != in_order


def test_resident_windows_are_the_streamed_ones_sampled_uniformly(cartpole):
    """The in-memory table (what the world-model trainer samples in the graph) holds exactly
    the windows ``windows`` streams, and a key's batch is every column of one such window."""
    data_dir, _, _ = cartpole
    k = 3
    table = data.resident_windows(data_dir, "train", history=k)
    streamed = {}
    for b in data.windows(data_dir, "train", history=k, batch_size=500,
                          shuffle=False).as_numpy_iterator():
        for i in range(len(b["action"])):
            streamed[(int(b["episode"][i]), int(b["frame_number"][i]))] = {
                name: v[i] for name, v in b.items()}
    everything = data.sample_windows(table, 1, k, tf.constant([0, 0]))  # shapes only
    assert set(everything) == set(next(iter(streamed.values())))
    every = {name: v.numpy() for name, v in data.gather_windows(table.steps, table.ends,
                                                                 k).items()}
    keys = list(zip(every["episode"].tolist(), every["frame_number"].tolist()))
    assert len(keys) == len(set(keys)) == len(streamed) and set(keys) == set(streamed)
    for i, key in enumerate(keys):
        for name, want in streamed[key].items():
            assert bits(every[name][i]) == bits(want), (key, name)

    draw = lambda seed: data.sample_windows(table, 4096, k, tf.constant([seed, 7]))
    a, b, c = draw(1), draw(1), draw(2)
    assert all(bits(a[n].numpy()) == bits(b[n].numpy()) for n in a)  # stateless in the key
    assert bits(a["frame_number"].numpy()) != bits(c["frame_number"].numpy())
    drawn = collections.Counter(zip(a["episode"].numpy().tolist(),
                                    a["frame_number"].numpy().tolist()))
    assert set(drawn) <= set(streamed)  # only valid windows
    assert len(drawn) > 0.5 * min(len(streamed), 4096)  # spread, not a few repeated


def test_kill_and_resume_gives_identical_files(tmp_path):
    env = CartPole(num_envs=2)
    kwargs = dict(num_steps=1000, seed=11, steps_per_shard=200, dev_fraction=0.2,
                  progress=False)
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    data.record(env, random_policy(env), data_dir=whole, **kwargs)

    with pytest.raises(Killed):  # dies 30 steps into shard 2
        data.record(env, random_policy(env), data_dir=killed, on_step=Capture((2, 30)),
                    **kwargs)
    names = sorted(os.listdir(killed))
    assert names == ["data_spec.json", "train-00000-of-00004.epoch0.tfrecord",
                     "train-00001-of-00004.epoch0.tfrecord"]
    # A SIGKILLed writer would have left its temp file behind: fake one.
    with open(os.path.join(killed, "train-00002-of-00004.epoch0.tfrecord.tmp"), "wb") as f:
        f.write(b"half a shard")

    summary = data.record(env, random_policy(env), data_dir=killed, **kwargs)
    assert (summary.shards_skipped, summary.shards_written) == (2, 3)
    assert sorted(os.listdir(killed)) == sorted(os.listdir(whole))
    assert not [n for n in os.listdir(killed) if n.endswith(".tmp")]
    for name in os.listdir(whole):
        with open(os.path.join(whole, name), "rb") as a:
            with open(os.path.join(killed, name), "rb") as b:
                assert a.read() == b.read(), name

    # A second collection epoch lands beside the first; readers take all or chosen epochs.
    data.record(env, random_policy(env), data_dir=killed, **{**kwargs, "epoch": 1,
                                                              "num_steps": 300})
    epoch_of = lambda **kw: collections.Counter(
        (int(r["epoch"]), int(r["episode"]) // 10**12)
        for r in data.read_steps(killed, **kw).as_numpy_iterator())
    assert set(epoch_of()) == {(0, 0), (1, 1)}
    assert set(epoch_of(epochs=[1])) == {(1, 1)}
    assert data.shard_files(killed, "train")[-1].endswith("train-00000-of-00001.epoch1.tfrecord")

    again = data.record(env, random_policy(env), data_dir=killed, **kwargs)
    assert (again.shards_skipped, again.shards_written) == (5, 0)
    with pytest.raises(UserError, match="seed 11 -> 12"):
        data.record(env, random_policy(env), data_dir=killed, **{**kwargs, "seed": 12})
    with pytest.raises(UserError, match="problem CartPole, this env has Pendulum"):
        pend = Pendulum(num_envs=2)
        data.record(pend, random_policy(pend), data_dir=killed, **{**kwargs, "epoch": 1})


def test_corrupt_shard_is_a_one_line_error_naming_the_file(cartpole, tmp_path):
    data_dir = str(tmp_path / "copy")
    shutil.copytree(cartpole[0], data_dir)
    train = data.shard_files(data_dir, "train")
    with open(train[1], "r+b") as f:  # truncated: the writer's disk filled up, say
        f.truncate(os.path.getsize(train[1]) - 7)
    for make in (lambda: data.read_steps(data_dir, "train"),
                 lambda: data.windows(data_dir, "train", history=2, batch_size=8)):
        with pytest.raises(UserError) as err:
            make()
        msg = str(err.value)
        assert train[1] in msg and "truncated record" in msg and "\n" not in msg

    dev = data.shard_files(data_dir, "dev")[0]
    with open(dev, "r+b") as f:  # one flipped payload byte
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(UserError, match=f"corrupt shard {dev}: corrupted record"):
        data.read_steps(data_dir, "dev")


def test_no_data_is_a_user_error_naming_the_dir(tmp_path, cartpole):
    for missing in (str(tmp_path), str(tmp_path / "nowhere")):
        with pytest.raises(UserError, match=f"no recorded data in {missing}"):
            data.read_steps(missing)
        with pytest.raises(UserError, match=f"no recorded data in {missing}"):
            data.windows(missing, history=1, batch_size=1)
    with pytest.raises(UserError, match="no dev shards of epochs \\[3\\]"):
        data.read_steps(cartpole[0], "dev", epochs=[3])
    with pytest.raises(UserError, match="unknown split"):
        data.read_steps(cartpole[0], "test")


def test_shard_splits():
    assert [i for i, s in enumerate(data.shard_splits(20, 0.1)) if s == "dev"] == [9, 19]
    assert data.shard_splits(3, 0.1) == ["train", "train", "dev"]
    assert data.shard_splits(1, 0.5) == ["train"]
    assert data.shard_splits(4, 0.0) == ["train"] * 4
    assert data.obs_encoding((84, 84, 1), tf.uint8) == "png"
    assert data.obs_encoding((10, 10, 3), tf.float32) == "float"
    assert data.obs_encoding((4,), tf.float64) == "bytes"
