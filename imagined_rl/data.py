"""Recorded experience on disk: sharded TFRecords of steps, and ``tf.data`` windows over them.

Recorded data must serve three readers: our world models (frame windows), tensor2tensor users
(who know t2t's gym field layout) and our own later runs (which resume an interrupted recording
and must get exactly the data an uninterrupted one would have written). Hence:

Files
    ``<data_dir>/<split>-<iiiii>-of-<nnnnn>.epoch<e>.tfrecord``: ``split`` is ``train`` or
    ``dev``, ``iiiii`` the shard's index within that split of collection epoch ``e`` (t2t's
    ``train-00003-of-00020`` naming plus t2t's per-epoch suffix), and ``data_spec.json`` beside
    them describes everything a reader needs (no env required). Paths may be ``gs://`` URLs.

Records
    One ``tf.train.Example`` per *frame*, in the order tensor2tensor's ``T2TEnv`` stored them: an
    episode of ``T`` transitions ``o_0 -a_0-> (r_1, o_1) -a_1-> ... (r_T, o_T)`` is ``T + 1``
    consecutive records, ``frame_number = t = 0 .. T``, and record ``t`` holds

    ==================== ========================================================================
    ``observation``      ``o_t`` (see "Observation encodings")
    ``action``           ``a_t``, the action taken on ``o_t``; on the final record (``t = T``),
                         where no action was taken, a placeholder 0 (zeros for a ``Box``), as t2t
    ``reward``           ``r_t``, the (clipped, training) reward received on arriving at ``o_t``,
                         0 on ``t = 0``; float (t2t stored ``int(reward - min_reward)``)
    ``unclipped_reward`` the env's reward for that same transition (float)
    ``done``             1 iff ``o_t`` is the episode's last observation (``t = T``), else 0
    ``terminated``       1 iff ``t = T`` and the episode ended in a true terminal state (0 when
                         it was cut by a time limit: bootstrap from ``o_T``)
    ``frame_number``     ``t``
    ``epoch``            the collection epoch (``record(..., epoch=)``)
    ``episode``          a global episode id, unique within the data dir:
                         ``(epoch * 10**6 + shard) * 10**6 + k`` for the ``k``-th episode of the
                         epoch's global shard ``shard`` (readable in decimal)
    ==================== ========================================================================

    So every transition ``(o_t, a_t) -> (r_{t+1}, o_{t+1}, done, terminated)`` is read off two
    consecutive records ``t`` and ``t + 1`` of one episode, and the final observation (the one
    auto-reset replaced, ``Step.final_obs``) is on disk as the final record, so a model can learn
    to predict it. This is exactly t2t's meaning of each field (their ``reward``/``done`` also
    belong to the frame they arrive with), so t2t's readers and ours agree on the timing.

Observation encodings (``data_spec.json`` ``observation.encoding``)
    ``png``    uint8 ``[H, W, C]`` images with ``C`` in {1, 3}: ``image/encoded`` (PNG bytes,
               lossless), ``image/format`` = ``"png"``, ``image/height``, ``image/width``:
               t2t's image fields.
    ``float``  float32/float16/bfloat16 observations of any shape: ``observation``, a float list
               of the flattened values (float32 holds all three exactly).
    ``bytes``  everything else, e.g. MinAtar's 10x10xC binary grids (PNG holds at most 4
               channels), bool/integer arrays or float64: ``observation/bytes``, the raw
               little-endian bytes of the array in its dtype, and ``observation/shape``.

Shards
    ``record`` collects ``ceil(num_steps / steps_per_shard)`` shards. Every shard is produced from
    an RNG key derived from ``(seed, epoch, global shard index)`` alone: a fresh env reset, then
    ``num_envs`` envs stepped together, each env's steps going to its own in-progress episode.
    Finished episodes go to the shard whole (never split across shards) until the shard holds at
    least ``steps_per_shard`` transitions; episodes still running at that moment are run to their
    end and kept (dropping them would over-represent short episodes), episodes begun after it are
    discarded. (``finish_episodes=False`` instead runs every env ``ceil(steps_per_shard /
    num_envs)`` steps and stores the running episodes cut there, as truncated.) A shard is
    written to ``<name>.tmp`` and renamed into place when complete, so a killed run never leaves
    a half shard; rerunning the same ``record`` call skips complete shards and regenerates the
    rest, and the result is byte-identical to an uninterrupted run (given the same policy).
    Global shards are assigned to ``dev`` evenly spaced (every ``1/dev_fraction``-th, at least
    one when ``dev_fraction > 0`` and there are two or more shards), the rest to
    ``train``. Files go through ``tf.io.gfile``; the rename is atomic on local disks, and on
    object stores (``gs://``) the final name still appears only once the shard is complete.

Reading
    ``read_steps`` yields the decoded frames of a split; ``windows`` yields batches of
    ``history`` consecutive frames of one episode with the action, next frame, reward and done
    flags a world model learns from. Both check every shard's record checksums first (one fast
    pass; ``verify=False`` skips it), so a truncated or corrupt file is a one-line ``UserError``
    naming it rather than a bare ``DataLossError`` in the middle of training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl.envs.core import BatchEnv, Box, Discrete, Key, make_key, raw_reward, split
from imagined_rl.errors import UserError

SPEC_FILE = "data_spec.json"
FORMAT = "imagined_rl.trajectories"
VERSION = 1
SPLITS = ("train", "dev")
MAX_SHARDS = 10**5  # the 5-digit shard numbers of the file names
_EPISODE_STRIDE = 10**6  # episode ids: (epoch * 10**6 + shard) * 10**6 + k
_SHARD_RE = re.compile(r"^(train|dev)-(\d{5})-of-(\d{5})\.epoch(\d+)\.tfrecord$")
_RAW_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "int64", "float64")
_FLOAT_DTYPES = ("float32", "float16", "bfloat16")

Policy = Callable[[tf.Tensor, Key], tf.Tensor]  # policy(obs [N, ...], key) -> action [N, ...]
StepHook = Callable[[int, dict[str, np.ndarray]], None]


# ----------------------------------------------------------------------------------------------
# The spec: what a reader needs to decode the records without the env.


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What ``data_spec.json`` says about the data in a directory.

    ``action`` is ``{"kind": "discrete", "n": n}`` or ``{"kind": "box", "shape": [...],
    "low": [...], "high": [...]}``. ``epochs`` maps each recorded epoch (as a string, JSON keys
    are strings) to the arguments it was recorded with: a rerun must match them to resume.
    """

    problem: str
    obs_shape: tuple[int, ...]
    obs_dtype: str
    obs_encoding: str  # "png" | "float" | "bytes"
    action: dict[str, Any]
    epochs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def discrete(self) -> bool:
        return self.action["kind"] == "discrete"

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else tuple(self.action["shape"])

    def fields(self) -> dict[str, dict[str, Any]]:
        """Every ``tf.train.Example`` feature: ``{name: {"type": int64|float|bytes, "length"}}``."""
        size = int(np.prod(self.obs_shape, dtype=np.int64))
        fields: dict[str, dict[str, Any]] = {
            "frame_number": {"type": "int64", "length": 1},
            "epoch": {"type": "int64", "length": 1},
            "episode": {"type": "int64", "length": 1},
        }
        if self.obs_encoding == "png":
            fields |= {
                "image/encoded": {"type": "bytes", "length": 1},
                "image/format": {"type": "bytes", "length": 1},
                "image/height": {"type": "int64", "length": 1},
                "image/width": {"type": "int64", "length": 1},
            }
        elif self.obs_encoding == "float":
            fields["observation"] = {"type": "float", "length": size}
        else:
            fields["observation/bytes"] = {"type": "bytes", "length": 1}
            fields["observation/shape"] = {"type": "int64", "length": len(self.obs_shape)}
        n_act = int(np.prod(self.action_shape, dtype=np.int64))
        fields["action"] = {"type": "int64" if self.discrete else "float", "length": n_act}
        for name in ("reward", "unclipped_reward"):
            fields[name] = {"type": "float", "length": 1}
        for name in ("done", "terminated"):
            fields[name] = {"type": "int64", "length": 1}
        return fields

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "problem": self.problem,
            "observation": {
                "shape": list(self.obs_shape),
                "dtype": self.obs_dtype,
                "encoding": self.obs_encoding,
            },
            "action": self.action,
            "layout": (
                "one tf.train.Example per frame t = 0..T of an episode: observation o_t, "
                "action a_t taken on it (placeholder 0 on the final frame), reward/"
                "unclipped_reward r_t received on arriving at o_t (0 at t=0), done = (t == T), "
                "terminated = episode ended in a terminal state (only at t == T); "
                "see imagined_rl/data.py"
            ),
            "fields": self.fields(),
            "epochs": self.epochs,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DataSpec:
        obs = obj["observation"]
        return cls(
            problem=obj["problem"],
            obs_shape=tuple(int(d) for d in obs["shape"]),
            obs_dtype=obs["dtype"],
            obs_encoding=obs["encoding"],
            action=obj["action"],
            epochs=dict(obj.get("epochs", {})),
        )


def obs_encoding(shape: Sequence[int], dtype: tf.DType | str) -> str:
    """How observations of this shape and dtype are stored: ``png``, ``float`` or ``bytes``."""
    name = tf.as_dtype(dtype).name
    shape = tuple(shape)
    if name == "uint8" and len(shape) == 3 and shape[-1] in (1, 3):
        return "png"
    if name in _FLOAT_DTYPES:
        return "float"
    if name in _RAW_DTYPES:
        return "bytes"
    raise UserError(
        f"cannot record observations of dtype {name}: supported are "
        f"{', '.join(_FLOAT_DTYPES + _RAW_DTYPES)}"
    )


def spec_for_env(env: BatchEnv, problem: str | None = None) -> DataSpec:
    """The :class:`DataSpec` (without epochs) for data recorded from ``env``."""
    obs_spec = env.observation_spec
    shape = tuple(int(d) for d in obs_spec.shape)
    act = env.action_spec
    if isinstance(act, Discrete):
        action: dict[str, Any] = {"kind": "discrete", "n": int(act.n)}
    elif isinstance(act, Box):
        low, high = act.bounds()
        action = {
            "kind": "box",
            "shape": list(act.shape),
            "low": low.reshape(-1).tolist(),
            "high": high.reshape(-1).tolist(),
        }
    else:
        raise UserError(f"env {env.name}: action_spec must be Discrete or Box, got {act!r}")
    return DataSpec(
        problem=problem or env.name,
        obs_shape=shape,
        obs_dtype=obs_spec.dtype.name,
        obs_encoding=obs_encoding(shape, obs_spec.dtype),
        action=action,
    )


def load_spec(data_dir: str) -> DataSpec:
    """Reads ``<data_dir>/data_spec.json``; :class:`UserError` if there is no data there."""
    path = _join(data_dir, SPEC_FILE)
    if not tf.io.gfile.exists(path):
        raise UserError(
            f"no recorded data in {data_dir} (no {SPEC_FILE}): record data there first "
            "(imagined_rl.data.record / datagen) or check the path"
        )
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            obj = json.load(f)
        if obj.get("format") != FORMAT:
            raise ValueError(f"format is {obj.get('format')!r}, expected {FORMAT!r}")
        if int(obj.get("version", -1)) > VERSION:
            raise ValueError(f"version {obj['version']} is newer than this library's {VERSION}")
        return DataSpec.from_json(obj)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"unreadable {path}: {e}; delete the data dir and record again") from e


def _write_spec(data_dir: str, spec: DataSpec) -> None:
    """Writes the spec atomically (temp file + rename), like the shards."""
    path = _join(data_dir, SPEC_FILE)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        json.dump(spec.to_json(), f, indent=1, sort_keys=True)
        f.write("\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


# ----------------------------------------------------------------------------------------------
# Shard names and the train/dev plan.


def shard_splits(num_shards: int, dev_fraction: float) -> list[str]:
    """The split (``train``/``dev``) of each global shard ``0 .. num_shards-1``.

    ``round(num_shards * dev_fraction)`` dev shards (at least one when ``dev_fraction > 0`` and
    ``num_shards >= 2``, never all), evenly spaced and ending at the last shard: 20 shards at 0.1
    make shards 9 and 19 dev.
    """
    n_dev = 0
    if dev_fraction > 0 and num_shards >= 2:
        n_dev = min(num_shards - 1, max(1, int(num_shards * dev_fraction + 0.5)))
    dev = {(j + 1) * num_shards // n_dev - 1 for j in range(n_dev)}
    return ["dev" if i in dev else "train" for i in range(num_shards)]


def shard_path(data_dir: str, split_name: str, index: int, count: int, epoch: int) -> str:
    """``<data_dir>/<split>-<index>-of-<count>.epoch<epoch>.tfrecord``."""
    return _join(data_dir, f"{split_name}-{index:05d}-of-{count:05d}.epoch{epoch}.tfrecord")


def _shard_paths(data_dir: str, splits: list[str], epoch: int) -> list[str]:
    """The file of each global shard, numbered within its split (t2t's ``-of-`` names)."""
    counts = {s: splits.count(s) for s in SPLITS}
    seen = dict.fromkeys(SPLITS, 0)
    paths = []
    for s in splits:
        paths.append(shard_path(data_dir, s, seen[s], counts[s], epoch))
        seen[s] += 1
    return paths


def shard_files(data_dir: str, split_name: str, epochs: Sequence[int] | None = None) -> list[str]:
    """The complete shards of ``split_name`` in ``data_dir``, ordered by epoch then index.

    Temp files of a killed writer are never listed. ``epochs`` keeps only those epochs.
    """
    if split_name not in SPLITS:
        raise UserError(f"unknown split {split_name!r}: expected one of {', '.join(SPLITS)}")
    found = []
    for path in tf.io.gfile.glob(_join(data_dir, f"{split_name}-*.tfrecord")):
        m = _SHARD_RE.match(path.replace("\\", "/").rsplit("/", 1)[-1])
        if m and (epochs is None or int(m.group(4)) in epochs):
            found.append((int(m.group(4)), int(m.group(2)), path))
    return [path for _, _, path in sorted(found)]


def _join(data_dir: str, name: str) -> str:
    return data_dir.rstrip("/") + "/" + name


# ----------------------------------------------------------------------------------------------
# Writing.


@dataclasses.dataclass
class RecordSummary:
    """What a :func:`record` call did; ``steps``/``episodes`` count the shards it wrote."""

    data_dir: str
    epoch: int
    num_shards: int
    shards_written: int = 0
    shards_skipped: int = 0
    steps: int = 0  # transitions in the written shards
    episodes: int = 0
    files: list[str] = dataclasses.field(default_factory=list)  # every shard of the epoch


@dataclasses.dataclass
class _Episode:
    """One env's episode in progress: frames 0..t (arrival obs, reward) and actions 0..t-1."""

    obs: list[np.ndarray]
    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=lambda: [0.0])
    unclipped: list[float] = dataclasses.field(default_factory=lambda: [0.0])
    terminated: bool = False

    @property
    def steps(self) -> int:
        return len(self.actions)


def _int64(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float(values: Any) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _bytes(values: Any) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


class _EpisodeEncoder:
    """Turns a finished :class:`_Episode` into its serialized ``tf.train.Example`` records."""

    def __init__(self, spec: DataSpec, epoch: int):
        self.spec = spec
        self.epoch_index = epoch
        self.epoch = _int64([epoch])
        self.shape = spec.obs_shape
        self.constant: dict[str, tf.train.Feature] = {}
        if spec.obs_encoding == "png":
            self.constant = {
                "image/format": _bytes([b"png"]),
                "image/height": _int64([self.shape[0]]),
                "image/width": _int64([self.shape[1]]),
            }
        elif spec.obs_encoding == "bytes":
            self.constant = {"observation/shape": _int64(list(self.shape))}
        self.null_action = np.zeros(spec.action_shape, np.int64 if spec.discrete else np.float32)

    def _obs_features(self, frames: np.ndarray) -> list[tuple[str, tf.train.Feature]]:
        enc = self.spec.obs_encoding
        if enc == "png":
            encoded = tf.io.encode_png(frames).numpy()  # one batched call per episode
            return [("image/encoded", _bytes([e])) for e in encoded]
        if enc == "float":
            flat = frames.astype(np.float32).reshape(len(frames), -1)
            return [("observation", _float(row.tolist())) for row in flat]
        frames = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        return [("observation/bytes", _bytes([f.tobytes()])) for f in frames]

    def encode(self, episode: _Episode, episode_id: int) -> list[bytes]:
        frames = np.stack(episode.obs)
        obs_features = self._obs_features(frames)
        last = len(episode.obs) - 1
        episode_feature = _int64([episode_id])
        records = []
        for t in range(last + 1):
            action = episode.actions[t] if t < last else self.null_action
            action = np.asarray(action).reshape(-1)
            feature = {
                "frame_number": _int64([t]),
                "epoch": self.epoch,
                "episode": episode_feature,
                obs_features[t][0]: obs_features[t][1],
                "action": _int64(action.astype(np.int64).tolist())
                if self.spec.discrete
                else _float(action.astype(np.float32).tolist()),
                "reward": _float([episode.rewards[t]]),
                "unclipped_reward": _float([episode.unclipped[t]]),
                "done": _int64([int(t == last)]),
                "terminated": _int64([int(t == last and episode.terminated)]),
                **self.constant,
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            # deterministic: protobuf map order varies between processes; keep bytes stable
            records.append(example.SerializeToString(deterministic=True))
        return records


def record(
    env: BatchEnv,
    policy: Policy,
    num_steps: int,
    data_dir: str,
    seed: int,
    *,
    dev_fraction: float = 0.1,
    steps_per_shard: int = 10_000,
    epoch: int = 0,
    problem: str | None = None,
    finish_episodes: bool = True,
    reward_clip: tuple[float, float] | None = None,
    progress: bool = True,
    max_episode_steps: int = 100_000,
    on_step: StepHook | None = None,
    policy_id: str = "random",
) -> RecordSummary:
    """Records about ``num_steps`` env steps of ``policy`` on ``env`` into ``data_dir``.

    Writes ``ceil(num_steps / steps_per_shard)`` shards of collection epoch ``epoch`` (see the
    module docstring for the layout), each holding at least ``steps_per_shard`` transitions, so
    the total is at least ``num_steps``. With ``finish_episodes`` (the default) a shard holds
    whole episodes only: once it has ``steps_per_shard`` transitions in finished episodes, the
    episodes still running are run to their end, so a shard may exceed ``steps_per_shard`` by
    up to about ``num_envs`` episode lengths (size ``steps_per_shard`` well above that). With
    ``finish_episodes=False`` every env runs exactly ``ceil(steps_per_shard / num_envs)``
    steps and the episodes running at the end are stored cut there, as truncated (``done`` 1,
    ``terminated`` 0; t2t also stored the rollouts cut by the end of an epoch): use it when
    episodes are long compared with the budget, as in SimPLe's small Atari epochs.

    ``policy(obs, key)`` maps a batch of observations and a stateless RNG key to a batch of
    actions (for instance ``lambda obs, key: random_actions(env.action_spec, env.num_envs,
    key)``); it is traced into a ``tf.function`` together with ``env.step`` and must be
    deterministic given its key for the data to be reproducible.

    Resumable: complete shards already in ``data_dir`` are skipped, so rerunning the same call
    after a kill finishes the job with byte-identical data. A rerun with different arguments for
    the same epoch is refused (``UserError``). Not safe for two writers on one directory.

    ``reward_clip=(lo, hi)`` stores ``clip(reward, lo, hi)`` as ``reward`` (the training reward)
    beside the env's ``unclipped_reward``. ``max_episode_steps`` guards against an env that
    never ends an episode (each episode is buffered in memory until it ends). ``policy_id``
    names the policy in the epoch's recorded arguments, so a rerun with another policy is refused
    instead of mixing shards. ``on_step(shard,
    transition)``, if given, sees every env step of every shard this call generates, as numpy
    arrays: ``obs``, ``action``, ``reward``, ``unclipped_reward``, ``terminated``,
    ``truncated``, ``next_obs``, ``final_obs`` (each with the leading ``[num_envs]`` axis).
    """
    num_steps, steps_per_shard, epoch = int(num_steps), int(steps_per_shard), int(epoch)
    if num_steps < 1:
        raise UserError(f"num_steps must be >= 1, got {num_steps}")
    if steps_per_shard < 1:
        raise UserError(f"steps_per_shard must be >= 1, got {steps_per_shard}")
    if not 0.0 <= dev_fraction < 1.0:
        raise UserError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    if epoch < 0:
        raise UserError(f"epoch must be >= 0, got {epoch}")
    num_shards = math.ceil(num_steps / steps_per_shard)
    if num_shards >= MAX_SHARDS:
        raise UserError(
            f"{num_shards} shards is too many (at most {MAX_SHARDS - 1}): raise steps_per_shard"
        )

    spec = _claim_epoch(
        data_dir,
        spec_for_env(env, problem),
        epoch,
        {
            "seed": int(seed),
            "num_steps": num_steps,
            "steps_per_shard": steps_per_shard,
            "dev_fraction": float(dev_fraction),
            "num_shards": num_shards,
            "num_envs": int(env.num_envs),
            "finish_episodes": bool(finish_episodes),
            "env": env.name,
            "reward_clip": None if reward_clip is None else [float(v) for v in reward_clip],
            "policy": policy_id,  # a resumed epoch must not mix shards of two policies
        },
    )
    splits = shard_splits(num_shards, dev_fraction)
    paths = _shard_paths(data_dir, splits, epoch)
    for stale in tf.io.gfile.glob(_join(data_dir, f"*.epoch{epoch}.tfrecord.tmp")):
        tf.io.gfile.remove(stale)  # left by a killed writer; its shard is regenerated below

    summary = RecordSummary(data_dir, epoch, num_shards, files=paths)
    root = make_key(seed)
    with tqdm.tqdm(
        total=num_shards * steps_per_shard, unit="step", disable=not progress,
        desc=f"recording epoch {epoch}", dynamic_ncols=True,
    ) as bar:
        recorder = _ShardRecorder(
            env, _make_step_fn(env, policy), _EpisodeEncoder(spec, epoch), steps_per_shard,
            finish_episodes, reward_clip, max_episode_steps, on_step, bar,
        )
        for shard, path in enumerate(paths):
            if tf.io.gfile.exists(path):
                summary.shards_skipped += 1
                bar.update(steps_per_shard)
                continue
            key = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(root, epoch), shard
            )
            steps, episodes = recorder.run(shard, key, path)
            summary.shards_written += 1
            summary.steps += steps
            summary.episodes += episodes
    return summary


def _claim_epoch(
    data_dir: str, spec: DataSpec, epoch: int, args: dict[str, Any]
) -> DataSpec:
    """Checks ``data_dir`` can take epoch ``epoch`` recorded with ``args``; writes the spec.

    A new dir gets a fresh spec; an existing one must hold the same kind of data, and if it
    already has this epoch, recorded with the same arguments (that is a resume).
    """
    tf.io.gfile.makedirs(data_dir)
    if tf.io.gfile.exists(_join(data_dir, SPEC_FILE)):
        old = load_spec(data_dir)
        for what, mine, theirs in (
            ("problem", spec.problem, old.problem),
            ("observation shape", list(spec.obs_shape), list(old.obs_shape)),
            ("observation dtype", spec.obs_dtype, old.obs_dtype),
            ("observation encoding", spec.obs_encoding, old.obs_encoding),
            ("action spec", spec.action, old.action),
        ):
            if mine != theirs:
                raise UserError(
                    f"{data_dir} holds data with {what} {theirs}, this env has {mine}: "
                    "record into another data dir"
                )
        previous = old.epochs.get(str(epoch))
        if previous is not None and previous != args:
            diff = ", ".join(
                f"{k} {previous.get(k)!r} -> {args.get(k)!r}"
                for k in sorted(set(previous) | set(args))
                if previous.get(k) != args.get(k)
            )
            raise UserError(
                f"{data_dir} already holds epoch {epoch} recorded with other arguments ({diff}): "
                "rerun with the original ones to resume, or use another epoch or data dir"
            )
        epochs = dict(old.epochs)
    else:
        epochs = {}
    epochs[str(epoch)] = args
    spec = dataclasses.replace(spec, epochs=epochs)
    _write_spec(data_dir, spec)
    return spec


def _make_step_fn(
    env: BatchEnv, policy: Policy
) -> Callable[[Any, tf.Tensor, tf.Tensor], tuple[Any, tf.Tensor, Any, tf.Tensor]]:
    """One ``tf.function`` call per batch step: draw keys, act, step the env."""

    @tf.function
    def step_fn(state: Any, obs: tf.Tensor, key: tf.Tensor) -> tuple[Any, tf.Tensor, Any, Any]:
        k_act, k_step, key = tf.unstack(split(key, 3))
        action = policy(obs, k_act)
        state, step = env.step(state, action, k_step)
        return state, action, step, key

    return step_fn


@dataclasses.dataclass
class _ShardRecorder:
    """Generates shards: runs the envs from a shard's key and writes its episodes."""

    env: BatchEnv
    step_fn: Callable[..., Any]
    encoder: _EpisodeEncoder
    steps_per_shard: int
    finish_episodes: bool
    reward_clip: tuple[float, float] | None
    max_episode_steps: int
    on_step: StepHook | None
    bar: tqdm.tqdm

    def run(self, shard: int, key: tf.Tensor, path: str) -> tuple[int, int]:
        """Writes global shard ``shard`` to ``path`` (via ``path.tmp``, renamed when complete);
        returns its ``(transitions, episodes)``."""
        tmp = path + ".tmp"
        try:
            with tf.io.TFRecordWriter(tmp) as writer:
                counts = self._generate(shard, key, writer)
            tf.io.gfile.rename(tmp, path, overwrite=True)
        except BaseException:  # Ctrl-C included: leave no temp file behind
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
            raise
        return counts

    def _generate(
        self, shard: int, key: tf.Tensor, writer: tf.io.TFRecordWriter
    ) -> tuple[int, int]:
        env, n, spec = self.env, self.env.num_envs, self.encoder.spec
        limit = self.steps_per_shard
        batch_steps = math.ceil(limit / n)  # finish_episodes=False: a fixed-length rollout
        episode_base = (self.encoder.epoch_index * _EPISODE_STRIDE + shard) * _EPISODE_STRIDE
        kept_steps = episodes = 0

        def write(ep: _Episode) -> None:
            nonlocal kept_steps, episodes
            if episodes >= _EPISODE_STRIDE:
                raise UserError(
                    f"more than {_EPISODE_STRIDE} episodes in one shard: lower steps_per_shard"
                )
            for rec in self.encoder.encode(ep, episode_base + episodes):
                writer.write(rec)
            episodes += 1
            before = min(kept_steps, limit)
            kept_steps += ep.steps
            self.bar.update(min(kept_steps, limit) - before)

        reset_key, key = tf.unstack(split(key))
        state, obs = env.reset(reset_key)
        obs_np = _check_obs(env, obs, spec, "reset obs")
        current = [_Episode(obs=[obs_np[i]]) for i in range(n)]
        active = [True] * n  # False: this env's episode began after the cut; ignore the env
        cut = False  # the shard has its steps; finish the running episodes, start no more
        it = 0
        while any(active):
            state, action, step, key = self.step_fn(state, obs, key)
            obs, it = step.obs, it + 1
            action_np = action.numpy()
            unclipped = raw_reward(state, step).numpy()  # the game's score (Atari: unclipped)
            reward = step.reward.numpy()  # the training reward, as the env gives it
            if self.reward_clip is not None:
                reward = np.clip(reward, *self.reward_clip)
            terminated = step.terminated.numpy()
            truncated = step.truncated.numpy()
            next_np = _check_obs(env, step.obs, spec, "step obs")
            final_np = _check_obs(env, step.final_obs, spec, "step final_obs")
            if self.on_step is not None:
                self.on_step(shard, {
                    "obs": obs_np, "action": action_np, "reward": reward,
                    "unclipped_reward": unclipped, "terminated": terminated,
                    "truncated": truncated, "next_obs": next_np, "final_obs": final_np,
                })
            obs_np = next_np
            for i in range(n):
                if not active[i]:
                    continue
                ep = current[i]
                ep.actions.append(action_np[i])
                ep.obs.append(final_np[i])
                ep.rewards.append(float(reward[i]))
                ep.unclipped.append(float(unclipped[i]))
                if terminated[i] or truncated[i]:
                    ep.terminated = bool(terminated[i])
                    write(ep)
                    if cut:
                        active[i] = False
                    current[i] = _Episode(obs=[next_np[i]])
                elif ep.steps >= self.max_episode_steps:
                    raise UserError(
                        f"env {env.name}: an episode ran past {self.max_episode_steps} steps "
                        "without ending; give the env a time limit or raise max_episode_steps"
                    )
            if not self.finish_episodes and it >= batch_steps:
                for i in range(n):  # cut where they stand: stored as truncated
                    if current[i].steps > 0:
                        write(current[i])
                break
            if not cut and kept_steps >= limit:
                cut = True
                for i in range(n):  # an episode that only just began starts after the cut
                    if current[i].steps == 0:
                        active[i] = False
        return kept_steps, episodes


def _check_obs(env: BatchEnv, obs: tf.Tensor, spec: DataSpec, where: str) -> np.ndarray:
    """``obs`` as numpy, after checking it matches the spec (a wrong env fails in one line)."""
    arr = obs.numpy() if hasattr(obs, "numpy") else np.asarray(obs)
    want = (env.num_envs, *spec.obs_shape)
    if arr.shape != want or arr.dtype.name != spec.obs_dtype:
        raise UserError(
            f"env {env.name}: {where} is {arr.dtype.name}{list(arr.shape)}, observation_spec "
            f"says {spec.obs_dtype}{list(want)}"
        )
    return arr


# ----------------------------------------------------------------------------------------------
# Reading.


def _decoder(spec: DataSpec) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """A function from a batch of serialized records ``[B]`` to their decoded step dicts
    (each value ``[B, ...]``; see :func:`read_steps`). Parsing in batches is several times
    faster than record by record."""
    scalar_int = tf.io.FixedLenFeature([], tf.int64)
    scalar_float = tf.io.FixedLenFeature([], tf.float32)
    features: dict[str, tf.io.FixedLenFeature] = {
        "frame_number": scalar_int,
        "epoch": scalar_int,
        "episode": scalar_int,
        "reward": scalar_float,
        "unclipped_reward": scalar_float,
        "done": scalar_int,
        "terminated": scalar_int,
    }
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
        return {
            "obs": obs,
            "action": action,
            "reward": ex["reward"],
            "unclipped_reward": ex["unclipped_reward"],
            "done": done,
            "terminated": tf.cast(ex["terminated"], tf.bool),
            "is_final": done,
            "frame_number": ex["frame_number"],
            "episode": ex["episode"],
            "epoch": ex["epoch"],
        }

    return decode


def _files_or_fail(
    data_dir: str, split_name: str, epochs: Sequence[int] | None, verify: bool
) -> tuple[DataSpec, list[str]]:
    """The spec and shard list of a split, with a one-line ``UserError`` for missing data and,
    when ``verify``, for a corrupt shard."""
    spec = load_spec(data_dir)
    files = shard_files(data_dir, split_name, epochs)
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
    ds = tf.data.TFRecordDataset(files).batch(_CHUNK)
    ds = ds.map(_decoder(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.unbatch().prefetch(tf.data.AUTOTUNE)


_CHUNK = 256  # records parsed and windowed together
_WINDOW_KEYS = ("obs", "action", "reward", "unclipped_reward", "done", "terminated",
                "frame_number", "episode")


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
    decode = _decoder(spec)
    probe = tf.data.TFRecordDataset(files[:1]).batch(_CHUNK).map(decode).element_spec
    tail0 = {  # the last k frames before a shard: none (episode -1 matches nothing)
        name: tf.zeros([k, *probe[name].shape[1:]], probe[name].dtype) for name in _WINDOW_KEYS
    }
    tail0["episode"] = tf.fill([k], tf.constant(-1, tf.int64))

    def carry(tail: dict[str, tf.Tensor], chunk: dict[str, tf.Tensor]) -> tuple[Any, Any]:
        block = {name: tf.concat([tail[name], chunk[name]], axis=0) for name in _WINDOW_KEYS}
        return {name: v[-k:] for name, v in block.items()}, block

    def cut_windows(block: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        episode, frame = block["episode"], block["frame_number"]
        starts = tf.range(tf.shape(episode)[0] - k, dtype=tf.int32)
        ends = starts + k
        # Episodes are contiguous in a shard: equal ids k frames apart mean one episode.
        whole = tf.equal(tf.gather(episode, starts), tf.gather(episode, ends)) & tf.equal(
            tf.gather(frame, ends) - tf.gather(frame, starts), k
        )
        t = tf.boolean_mask(starts, whole) + (k - 1)  # index of o_t
        nxt = t + 1
        return {
            "inputs": tf.gather(block["obs"], t[:, None] + tf.range(1 - k, 1)),
            "action": tf.gather(block["action"], t),
            "targets": tf.gather(block["obs"], nxt),
            "reward": tf.gather(block["reward"], nxt),
            "unclipped_reward": tf.gather(block["unclipped_reward"], nxt),
            "done": tf.gather(block["done"], nxt),
            "terminated": tf.gather(block["terminated"], nxt),
            "episode": tf.gather(episode, nxt),
            "frame_number": tf.gather(frame, t),
        }

    def shard_windows(path: tf.Tensor) -> tf.data.Dataset:
        ds = tf.data.TFRecordDataset(path).batch(_CHUNK).map(decode)
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


__all__ = [
    "SPEC_FILE",
    "DataSpec",
    "RecordSummary",
    "load_spec",
    "obs_encoding",
    "read_steps",
    "record",
    "shard_files",
    "shard_path",
    "shard_splits",
    "spec_for_env",
    "verify_shards",
    "windows",
]
