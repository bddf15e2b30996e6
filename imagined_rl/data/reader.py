"""Reading recorded experience: decoded steps, world-model windows, and whole-episode frames.

Reading
    ``read_steps`` yields the decoded frames of a split; ``windows`` yields batches of
    ``history`` consecutive frames of one episode with the action, next frame, reward and done
    flags a world model learns from, streamed by ``tf.data``; ``resident_windows`` reads a
    split once into memory and ``sample_windows`` draws uniform batches from it inside a
    compiled program (how the world-model trainer feeds one device). All check every shard's
    record checksums first (one fast pass; ``verify=False`` skips it), so a truncated or
    corrupt file is a one-line ``UserError`` naming it rather than a bare ``DataLossError`` in
    the middle of training.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from imagined_rl.data.format import SPEC_FILE, DataSpec, load_spec, shard_files
from imagined_rl.errors import UserError


def _decoder(spec: DataSpec) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """A function from a batch of serialized records ``[B]`` to their decoded step dicts
    (each value ``[B, ...]``; see :func:`read_steps`). Parsing in batches is several times
    faster than record by record."""
    scalar_int = tf.io.FixedLenFeature([], tf.int64)
    scalar_float = tf.io.FixedLenFeature([], tf.float32)
    t2t = spec.style == "t2t"
    features: dict[str, tf.io.FixedLenFeature] = {
        "frame_number": scalar_int,
        "epoch": scalar_int,
        "reward": scalar_int if t2t else scalar_float,
        "unclipped_reward": scalar_float,
        "done": scalar_int,
    }
    if not t2t:
        features |= {"episode": scalar_int, "terminated": scalar_int}
    shape = list(spec.obs_shape)
    obs_size = int(np.prod(spec.obs_shape, dtype=np.int64))
    obs_dtype = tf.as_dtype(spec.obs_dtype)
    if spec.obs_encoding == "png":
        features["image/encoded"] = tf.io.FixedLenFeature([], tf.string)
    elif spec.obs_encoding == "float":
        features["observation"] = tf.io.FixedLenFeature([obs_size], tf.float32)
    elif spec.obs_encoding == "bytes":
        features["observation/bytes"] = tf.io.FixedLenFeature([], tf.string)
    else:
        raise UserError(f"unknown observation encoding {spec.obs_encoding!r} in {SPEC_FILE}")
    act_size = int(np.prod(spec.action_shape, dtype=np.int64))
    features["action"] = tf.io.FixedLenFeature(
        [1] if spec.discrete else [act_size], tf.int64 if spec.discrete else tf.float32
    )

    def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        ex = tf.io.parse_example(serialized, features)
        if spec.obs_encoding == "png":
            obs = tf.map_fn(
                lambda png: tf.io.decode_png(png, channels=shape[-1]),
                ex["image/encoded"],
                fn_output_signature=tf.TensorSpec(shape, tf.uint8),
            )
        elif spec.obs_encoding == "float":
            obs = tf.cast(tf.reshape(ex["observation"], [-1, *shape]), obs_dtype)
        else:
            raw = tf.io.decode_raw(ex["observation/bytes"], obs_dtype)
            obs = tf.reshape(raw, [-1, *shape])
        if spec.discrete:
            action = tf.cast(ex["action"][:, 0], tf.int32)
        else:
            action = tf.reshape(ex["action"], [-1, *spec.action_shape])
        done = tf.cast(ex["done"], tf.bool)
        if t2t:  # int64 reward - min_reward; no terminated (done is terminal); no episode ids
            reward = tf.cast(ex["reward"] + spec.min_reward, tf.float32)
            terminated, episode = done, tf.zeros_like(ex["frame_number"])
        else:
            reward, terminated = ex["reward"], tf.cast(ex["terminated"], tf.bool)
            episode = ex["episode"]
        return {
            "obs": obs,
            "action": action,
            "reward": reward,
            "unclipped_reward": ex["unclipped_reward"],
            "done": done,
            "terminated": terminated,
            "is_final": done,
            "frame_number": ex["frame_number"],
            "episode": episode,
            "epoch": ex["epoch"],
        }

    return decode


def _decoded_chunks(files: Any, spec: DataSpec, parallel: bool = True) -> tf.data.Dataset:
    """The records of ``files`` (a list, or one path tensor), decoded in chunks of ``_CHUNK``.

    t2t-layout data has no episode ids: a scan numbers them in read order, a new episode
    starting wherever a frame does not follow its predecessor (``frame_number`` not one more,
    or another epoch), ids ``epoch * 10**12 + k``."""
    ds = tf.data.TFRecordDataset(files).batch(_CHUNK)
    if parallel:
        ds = ds.map(_decoder(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(_decoder(spec))
    if spec.style != "t2t":
        return ds

    def number(last: tuple[tf.Tensor, tf.Tensor, tf.Tensor], chunk: dict[str, tf.Tensor]):
        frame, epoch = chunk["frame_number"], chunk["epoch"]
        prev_frame = tf.concat([last[0][None], frame[:-1]], 0)
        prev_epoch = tf.concat([last[1][None], epoch[:-1]], 0)
        new = tf.cast((frame != prev_frame + 1) | (epoch != prev_epoch), tf.int64)
        k = last[2] + tf.cumsum(new)
        chunk = dict(chunk, episode=epoch * 10**12 + k)
        return (frame[-1], epoch[-1], k[-1]), chunk

    start = (tf.constant(-2, tf.int64), tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
    return ds.scan(start, number)


def _files_or_fail(
    data_dir: str, split_name: str, epochs: Sequence[int] | None, verify: bool
) -> tuple[DataSpec, list[str]]:
    """The spec and shard list of a split, with a one-line ``UserError`` for missing data and,
    when ``verify``, for a corrupt shard."""
    spec = load_spec(data_dir)
    files = shard_files(data_dir, split_name, epochs, spec.style)
    if not files:
        which = "" if epochs is None else f" of epochs {list(epochs)}"
        raise UserError(
            f"no {split_name} shards{which} in {data_dir}: record data first (a recording with "
            "a single shard has no dev shard; record more steps or lower steps_per_shard)"
        )
    if verify:
        verify_shards(files)
    return spec, files


def verify_shards(files: Sequence[str]) -> int:
    """Reads every record of ``files`` (TFRecord checks each record's CRC) and returns their
    number; a truncated or corrupt file raises a one-line :class:`UserError` naming it.

    One C++ pass over all files; the culprit is searched file by file only after a failure.
    """
    files = list(files)
    count = lambda ds: int(ds.reduce(np.int64(0), lambda c, _: c + 1))
    try:
        return count(tf.data.TFRecordDataset(files))
    except tf.errors.DataLossError as e:
        for path in files:
            try:
                count(tf.data.TFRecordDataset(path))
            except tf.errors.DataLossError as e2:
                raise UserError(
                    f"corrupt shard {path}: {_data_loss_reason(e2)}; delete it and rerun "
                    "the recording (it regenerates missing shards)"
                ) from e2
        raise UserError(f"corrupt shard among {files}: {_data_loss_reason(e)}") from e


def _data_loss_reason(error: tf.errors.DataLossError) -> str:
    """``truncated record at 11484`` out of TF's long iterator error message."""
    m = re.search(r"(truncated|corrupted) record at \d+", str(error))
    return m.group(0) if m else (str(error).splitlines() or ["data loss"])[0][:200]


def read_steps(
    data_dir: str,
    split: str = "train",
    *,
    epochs: Sequence[int] | None = None,
    verify: bool = True,
) -> tf.data.Dataset:
    """Every record of a split, in file order (epoch, shard, then as written), decoded.

    Each element is one frame (see the module docstring): ``obs`` in its original shape and
    dtype; ``action`` (int32 scalar, or float32 of the Box's shape; a placeholder on final
    frames); ``reward`` and ``unclipped_reward`` (float32, received on arriving at ``obs``);
    ``done`` = ``is_final`` (bool: ``obs`` is its episode's last); ``terminated`` (bool);
    ``frame_number``, ``episode``, ``epoch`` (int64). ``verify`` first reads every shard once so
    that a corrupt one fails here, naming the file, instead of mid-iteration.
    """
    spec, files = _files_or_fail(data_dir, split, epochs, verify)
    return _decoded_chunks(files, spec).unbatch().prefetch(tf.data.AUTOTUNE)


_CHUNK = 256  # records parsed and windowed together
_WINDOW_KEYS = ("obs", "action", "reward", "unclipped_reward", "done", "terminated",
                "frame_number", "episode")


def window_index(episode: tf.Tensor, frame_number: tf.Tensor, history: int) -> tf.Tensor:
    """The indices ``t`` (int32) of the frames ``o_t`` that end a valid window: frames
    ``t-history+1 .. t+1`` all of one episode and consecutive (episodes are contiguous in a
    shard, so equal ids ``history`` frames apart mean one episode)."""
    k = int(history)
    starts = tf.range(tf.shape(episode)[0] - k, dtype=tf.int32)
    ends = starts + k
    whole = tf.equal(tf.gather(episode, starts), tf.gather(episode, ends)) & tf.equal(
        tf.gather(frame_number, ends) - tf.gather(frame_number, starts), k)
    return tf.boolean_mask(starts, whole) + (k - 1)


def gather_windows(steps: dict[str, tf.Tensor], t: tf.Tensor, history: int
                   ) -> dict[str, tf.Tensor]:
    """The training examples (see :func:`windows`) of the windows ending at frames ``t`` of
    ``steps`` (decoded columns in file order), in one vectorized gather."""
    nxt = t + 1
    return {
        "inputs": tf.gather(steps["obs"], t[:, None] + tf.range(1 - int(history), 1)),
        "action": tf.gather(steps["action"], t),
        "targets": tf.gather(steps["obs"], nxt),
        "reward": tf.gather(steps["reward"], nxt),
        "unclipped_reward": tf.gather(steps["unclipped_reward"], nxt),
        "done": tf.gather(steps["done"], nxt),
        "terminated": tf.gather(steps["terminated"], nxt),
        "episode": tf.gather(steps["episode"], nxt),
        "frame_number": tf.gather(steps["frame_number"], t),
    }


def windows(
    data_dir: str,
    split: str = "train",
    *,
    history: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epochs: Sequence[int] | None = None,
    shuffle_buffer: int = 4096,
    drop_remainder: bool = False,
    verify: bool = True,
) -> tf.data.Dataset:
    """Batches of world-model training examples: ``history`` frames in, the next frame out.

    For every ``t`` with frames ``t-history+1 .. t+1`` all in one episode (a window never
    straddles two episodes; the last window of an episode targets its final observation):

    ================= ===========================================================================
    ``inputs``        obs ``o_{t-history+1} .. o_t``, ``[B, history, *obs_shape]``
    ``action``        ``a_t``, ``[B]`` int32 (or ``[B, *box_shape]`` float32)
    ``targets``       ``o_{t+1}``, ``[B, *obs_shape]``
    ``reward``        ``r_{t+1}`` (training reward), float32 ``[B]``; ``unclipped_reward`` too
    ``done``          ``o_{t+1}`` ends the episode; ``terminated``: in a terminal state (bool)
    ``episode``       the window's episode id; ``frame_number``: ``t`` (int64)
    ================= ===========================================================================

    Each shard is read sequentially in chunks of 256 records, each parsed and decoded in one
    batch (every frame is decoded once), and a ``scan`` carries the last ``history`` frames
    into the next chunk so that windows across chunk boundaries are not lost; the windows of a
    chunk are gathered in one vectorized step. With ``shuffle`` the shard order is shuffled,
    shards are read in parallel (interleaved) and windows pass a ``shuffle_buffer`` (memory:
    ``shuffle_buffer * (history + 1)`` frames), all seeded, so the order is a function of
    ``seed`` (and reshuffled on each pass of a ``.repeat()``-ed dataset). Without ``shuffle``
    windows come in file order. Batched (``drop_remainder`` for static shapes) and prefetched.
    """
    k = int(history)
    if k < 1:
        raise UserError(f"history must be >= 1, got {history}")
    if int(batch_size) < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    spec, files = _files_or_fail(data_dir, split, epochs, verify)
    probe = _decoded_chunks(files[:1], spec).element_spec
    tail0 = {  # the last k frames before a shard: none (episode -1 matches nothing)
        name: tf.zeros([k, *probe[name].shape[1:]], probe[name].dtype) for name in _WINDOW_KEYS
    }
    tail0["episode"] = tf.fill([k], tf.constant(-1, tf.int64))

    def carry(tail: dict[str, tf.Tensor], chunk: dict[str, tf.Tensor]) -> tuple[Any, Any]:
        block = {name: tf.concat([tail[name], chunk[name]], axis=0) for name in _WINDOW_KEYS}
        return {name: v[-k:] for name, v in block.items()}, block

    def cut_windows(block: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return gather_windows(block, window_index(block["episode"], block["frame_number"], k), k)

    def shard_windows(path: tf.Tensor) -> tf.data.Dataset:
        ds = _decoded_chunks(path, spec, parallel=False)
        return ds.scan(tail0, carry).map(cut_windows).unbatch()

    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            shard_windows, cycle_length=min(len(files), 8), block_length=16,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
        ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = ds.flat_map(shard_windows)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


class WindowTable(NamedTuple):
    """Every decoded step of a split in memory (``steps``: the columns of :func:`windows`'
    examples, in file order) and the frames ``ends`` (int32) that end a valid window: what
    :func:`sample_windows` draws uniform training batches from inside a compiled program."""

    steps: dict[str, tf.Tensor]
    ends: tf.Tensor


def resident_windows(data_dir: str, split: str = "train", *, history: int,
                     epochs: Sequence[int] | None = None, verify: bool = True) -> WindowTable:
    """Reads a split once into a :class:`WindowTable` (the same windows :func:`windows`
    yields; shard by shard, so none straddles two shards). Memory: every frame once (uint8
    for images: SimPLe's 100k Atari frames are 2.5 GB), rather than a stream's buffer."""
    k = int(history)
    if k < 1:
        raise UserError(f"history must be >= 1, got {history}")
    spec, files = _files_or_fail(data_dir, split, epochs, verify)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in _WINDOW_KEYS}
    ends, offset = [], 0
    for path in files:
        chunks = list(_decoded_chunks(path, spec).as_numpy_iterator())
        shard = {name: np.concatenate([c[name] for c in chunks]) for name in _WINDOW_KEYS}
        ends.append(window_index(shard["episode"], shard["frame_number"], k).numpy() + offset)
        for name in _WINDOW_KEYS:
            columns[name].append(shard[name])
        offset += len(shard["episode"])
    ends = np.concatenate(ends)
    if not len(ends):
        raise UserError(f"no window of {k + 1} consecutive frames of one episode in the "
                        f"{split} split of {data_dir}: record longer episodes")
    steps = {}
    for name in _WINDOW_KEYS:  # one column at a time: the peak is the split plus one column
        # identity: the op runs on the default device, so the table lives on the GPU/TPU there
        steps[name] = tf.identity(np.concatenate(columns.pop(name)))
    return WindowTable(steps, tf.identity(tf.convert_to_tensor(ends, tf.int32)))


def sample_windows(table: WindowTable, n: int, history: int, key: tf.Tensor
                   ) -> dict[str, tf.Tensor]:
    """``n`` training examples (see :func:`windows`) drawn uniformly, with replacement, among
    the table's windows; stateless in ``key``, so a step's batch is a function of its key."""
    i = tf.random.stateless_uniform([n], key, 0, tf.shape(table.ends)[0], dtype=tf.int32)
    return gather_windows(table.steps, tf.gather(table.ends, i), history)


def frame_chunks(
    data_dir: str,
    split: str = "train",
    *,
    epochs: Sequence[int] | None = None,
    chunk: int = 4096,
    verify: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The frames of a split in file order, in chunks of up to ``chunk`` frames:
    ``(obs [n, *obs_shape], episode int64 [n], is_final bool [n])``.

    What imagination's start frames are built from (``FrameStore.add``): records are parsed
    and decoded in batches by ``tf.data`` (no per-frame Python) and only these three columns
    are kept, so memory is bounded by the chunk plus whatever the caller keeps.
    """
    spec, files = _files_or_fail(data_dir, split, epochs, verify)
    ds = _decoded_chunks(files, spec)
    ds = ds.map(lambda s: (s["obs"], s["episode"], s["is_final"])).unbatch().batch(chunk)
    yield from ds.prefetch(2).as_numpy_iterator()
