"""Frames for pixel agents and imagination: FrameStack on real envs, stacked-policy recording,
and the device-resident FrameStore that imagined episodes start from."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data
from imagined_rl.envs.classic import CartPole
from imagined_rl.envs.core import FrameStack, check_env, make_key, random_actions, split
from imagined_rl.envs.simulated import FrameStore
from imagined_rl.errors import UserError


def test_frame_stack_pushes_frames_and_restarts_with_the_episode():
    inner, stacked = CartPole(3), FrameStack(CartPole(3), 4)
    check_env(stacked)
    assert stacked.observation_spec.shape == (16,)
    state, obs = stacked.reset(make_key(0))
    _, first = inner.reset(make_key(0))
    np.testing.assert_array_equal(obs.numpy(), np.tile(first.numpy(), 4))  # repeated at reset
    inner_state = inner.reset(make_key(0))[0]
    frames = [first.numpy()] * 4
    step = tf.function(stacked.step)  # like the eager inner env step (XLA rounds differently)
    ended = 0
    for i in range(60):
        k_act, k_step = tf.unstack(split(make_key(i), 2))
        action = random_actions(stacked.action_spec, 3, k_act)
        state, out = step(state, action, k_step)
        inner_state, ref = inner.step(inner_state, action, k_step)
        done = (ref.terminated | ref.truncated).numpy()
        final = np.concatenate([*frames[1:], ref.final_obs.numpy()], axis=-1)
        np.testing.assert_allclose(out.final_obs.numpy(), final, rtol=1e-5, atol=1e-6)
        frames = [np.where(done[:, None], ref.obs.numpy(), f) for f in frames[1:]] + [
            ref.obs.numpy()]
        stack = np.concatenate(frames, axis=-1)
        np.testing.assert_allclose(out.obs.numpy(), stack, rtol=1e-5, atol=1e-6)
        ended += done.sum()
    assert ended > 0  # episode boundaries were exercised


def test_recording_with_a_stacked_policy_keeps_single_frames(tmp_path):
    seen = []

    def policy(obs, key):
        seen.append(obs.shape)
        return random_actions(CartPole(4).action_spec, 4, key)

    for stack, where in ((1, "one"), (3, "three")):
        data.record(CartPole(4), policy, 2_000, str(tmp_path / where), seed=0,
                    steps_per_shard=1_000, progress=False, frame_stack=stack)
    assert [tuple(s) for s in seen] == [(4, 4), (4, 12)]  # the policy saw the stack
    one, three = (list(data.read_steps(str(tmp_path / w)).as_numpy_iterator())
                  for w in ("one", "three"))
    assert len(one) == len(three) > 0
    for a, b in zip(one, three):  # the data holds single frames, as without stacking
        np.testing.assert_array_equal(a["obs"], b["obs"])


def _synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Episode ids and final flags of ``n`` frames in episodes of 20..400 frames."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 400, size=n // 20 + 1)
    episode = np.repeat(np.arange(len(lengths)), lengths)[:n].astype(np.int64)
    final = np.append(episode[1:] != episode[:-1], True)
    return episode, final


def _frames(start: int, stop: int) -> np.ndarray:
    """Atari-sized frames whose first pixel spells the frame's index (3 bytes)."""
    idx = np.arange(start, stop)
    out = np.zeros([stop - start, 105, 80, 3], np.uint8)
    out[:, 0, 0] = np.stack([idx & 255, (idx >> 8) & 255, idx >> 16], axis=1)
    return out


def test_frame_store_holds_100k_atari_frames_with_a_small_graph():
    n, history, chunk = 100_000, 4, 8192
    episode, final = _synthetic(n)
    begin = time.perf_counter()
    store = FrameStore([105, 80, 3], tf.uint8, history, capacity=n)
    for i in range(0, n, chunk):  # chunked, as data.frame_chunks delivers them
        store.add(_frames(i, min(n, i + chunk)), episode[i:i + chunk], final[i:i + chunk])
    built = time.perf_counter() - begin
    assert built < 30, built  # seconds, not a per-frame Python loop
    sample = tf.function(store.sample, jit_compile=True)
    graph = sample.get_concrete_function(256, tf.TensorSpec([2], tf.int32)).graph
    assert graph.as_graph_def().ByteSize() < 50_000  # 2.5 GB of frames, none in the graph
    valid = sum(max(0, np.sum(episode == e) - history) for e in np.unique(episode))
    assert int(store.num_windows.numpy()) == valid
    for i in range(4):
        windows = sample(256, make_key(i)).numpy()
        pixel = windows[:, :, 0, 0].astype(np.int64)
        idx = pixel[..., 0] | (pixel[..., 1] << 8) | (pixel[..., 2] << 16)
        assert np.all(np.diff(idx, axis=1) == 1)  # consecutive frames
        assert np.all(episode[idx[:, 0]] == episode[idx[:, -1]])  # of one episode
        assert not final[idx[:, -1]].any()  # never ending on an episode's last frame
        assert np.all(windows[:, :, 1:] == 0)  # the frames themselves, not garbage


def test_frame_store_refuses_overflow_and_grows_under_a_compiled_sampler():
    episode, final = _synthetic(300)
    store = FrameStore([2], tf.float32, 2, capacity=300)
    obs = np.arange(600, dtype=np.float32).reshape(300, 2)
    store.add(obs[:100], episode[:100], final[:100])
    sample = tf.function(store.sample, jit_compile=True)
    before = sample(64, make_key(0)).numpy()
    assert before.max() < 200
    store.add(obs[100:], episode[100:], final[100:])
    after = np.concatenate([sample(64, make_key(i)).numpy() for i in range(8)])
    assert after.max() >= 200  # the same compiled sampler sees the new frames
    assert sample.experimental_get_tracing_count() == 1
    with pytest.raises(UserError, match="FrameStore is full"):
        store.add(obs[:1], episode[:1], final[:1])


def test_an_empty_store_is_refused_in_one_line():
    from imagined_rl import registry
    from imagined_rl.data import DataSpec
    from imagined_rl.envs.simulated import SimulatedBatchEnv

    spec = DataSpec("cartpole", (4,), "float32", "float", {"kind": "discrete", "n": 2})
    model = registry.model("vector_ensemble")(spec, registry.hparams("world_model_vector"))
    store = FrameStore([4], tf.float32, model.history, capacity=10)
    store.add(np.zeros([1, 4], np.float32), np.zeros(1, np.int64), np.ones(1, bool))
    with pytest.raises(UserError, match="no recorded episode has 1 frames") as err:
        SimulatedBatchEnv(model, store, 2)
    assert "\n" not in str(err.value)


def test_a_log_line_cut_by_a_kill_is_dropped(tmp_path):
    from imagined_rl import rundir

    path = str(tmp_path / "log.jsonl")
    with open(path, "w") as f:
        f.write('{"step": 1}\n{"step": 2}\n{"ste')
    assert rundir.read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert rundir.keep_jsonl(path, lambda r: r["step"] < 2) == [{"step": 1}]
    with open(path) as f:
        assert f.read() == '{"step": 1}\n'
    with open(path, "w") as f:
        f.write('{"ste\n{"step": 2}\n')
    with pytest.raises(UserError, match="line 1 is not JSON"):
        rundir.read_jsonl(path)
