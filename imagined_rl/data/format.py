"""The on-disk format of recorded experience: the spec, the record fields, shard names.

Files
    ``<data_dir>/<split>-<iiiii>-of-<nnnnn>.epoch<e>.tfrecord``: ``split`` is ``train`` or
    ``dev``, ``iiiii`` the shard's index within that split of collection epoch ``e`` (t2t's
    ``train-00003-of-00020`` naming plus t2t's per-epoch suffix), and ``data_spec.json`` beside
    them describes everything a reader needs (no env required). Paths may be ``gs://`` URLs.
    tensor2tensor's own layout (``style`` ``"t2t"``, see below) names them
    ``<problem>-<split>-<iiiii>-of-<nnnnn>.<e>`` instead.

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

tensor2tensor's layout (``DataSpec.style == "t2t"``)
    What t2t's ``T2TEnv.generate_data`` writes and its readers expect, byte for byte in names and
    fields: files ``<problem>-train-00000-of-00010.<epoch>``; only the fields ``frame_number``,
    ``epoch``, the PNG ``image/*`` fields, ``action``, ``reward`` (int64:
    ``round(clip(r, min_reward, max_reward)) - min_reward``, so with t2t's default reward range
    ``(-1, 1)`` a 0 reward is 1), ``unclipped_reward`` and ``done``. There is no ``episode`` or
    ``terminated``: readers number episodes by ``frame_number`` (a frame that does not follow its
    predecessor starts one) and take ``done`` as terminal. ``datagen --format=t2t`` writes it
    (with a ``data_spec.json`` beside, which t2t ignores); a directory t2t's own ``t2t-datagen``
    wrote, with no spec, is read by inferring one (:func:`infer_t2t_spec`).

"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from imagined_rl.envs.core import BatchEnv, Box, Discrete
from imagined_rl.errors import UserError

SPEC_FILE = "data_spec.json"
FORMAT = "imagined_rl.trajectories"
VERSION = 1
SPLITS = ("train", "dev")
MAX_SHARDS = 10**5  # the 5-digit shard numbers of the file names
EPISODE_STRIDE = 10**6  # episode ids: (epoch * 10**6 + shard) * 10**6 + k
_SHARD_RE = re.compile(r"^(train|dev)-(\d{5})-of-(\d{5})\.epoch(\d+)\.tfrecord$")
_T2T_SHARD_RE = re.compile(r"^(.+)-(train|dev)-(\d{5})-of-(\d{5})\.(\d+)$")
STYLES = ("imagined_rl", "t2t")
T2T_REWARD_RANGE = (-1, 1)  # EnvSimulationProblem.reward_range, what every t2t gym problem uses
_RAW_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "int64", "float64")
_FLOAT_DTYPES = ("float32", "float16", "bfloat16")



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
    # real env steps each shard took to write, kept or not: {epoch: {global shard: steps}}
    env_steps: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    style: str = "imagined_rl"  # file names and fields: "imagined_rl" or t2t's ("t2t")
    min_reward: int = T2T_REWARD_RANGE[0]  # style "t2t": stored reward = reward - min_reward

    def env_steps_of(self, epoch: int | None = None) -> int:
        """Real env steps spent recording ``epoch`` (every epoch when None): every step the
        env took, including those of episodes cut or discarded at a shard's end. This, not the
        number of stored transitions, is what a sample-efficiency figure must count."""
        chosen = self.env_steps.values() if epoch is None else [
            self.env_steps.get(str(epoch), {})]
        return int(sum(sum(c.values()) for c in chosen))

    @property
    def discrete(self) -> bool:
        return self.action["kind"] == "discrete"

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else tuple(self.action["shape"])

    def fields(self) -> dict[str, dict[str, Any]]:
        """Every ``tf.train.Example`` feature: ``{name: {"type": int64|float|bytes, "length"}}``."""
        if self.style == "t2t":
            return {name: {"type": kind, "length": 1} for name, kind in (
                ("frame_number", "int64"), ("epoch", "int64"), ("image/encoded", "bytes"),
                ("image/format", "bytes"), ("image/height", "int64"), ("image/width", "int64"),
                ("action", "int64"), ("reward", "int64"), ("unclipped_reward", "float"),
                ("done", "int64"))}
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
            "style": self.style,
            "min_reward": self.min_reward,
            "layout": (
                "one tf.train.Example per frame t = 0..T of an episode: observation o_t, "
                "action a_t taken on it (placeholder 0 on the final frame), reward/"
                "unclipped_reward r_t received on arriving at o_t (0 at t=0), done = (t == T), "
                "terminated = episode ended in a terminal state (only at t == T); "
                "see imagined_rl/data/format.py"
            ) if self.style == "imagined_rl" else (
                "tensor2tensor's T2TEnv layout: one tf.train.Example per frame, reward stored "
                "as int64 round(r) - min_reward, no episode or terminated fields; see "
                "imagined_rl/data/format.py"
            ),
            "fields": self.fields(),
            "epochs": self.epochs,
            "env_steps": self.env_steps,
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
            env_steps={e: {k: int(v) for k, v in c.items()}
                       for e, c in obj.get("env_steps", {}).items()},
            style=obj.get("style", "imagined_rl"),
            min_reward=int(obj.get("min_reward", T2T_REWARD_RANGE[0])),
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
    """Reads ``<data_dir>/data_spec.json``; without one, the spec of the t2t-written data there
    (:func:`infer_t2t_spec`); :class:`UserError` if there is no data there."""
    path = join(data_dir, SPEC_FILE)
    if not tf.io.gfile.exists(path):
        if _t2t_shards(data_dir):
            return infer_t2t_spec(data_dir)
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


def infer_t2t_spec(data_dir: str) -> DataSpec:
    """The spec of data tensor2tensor's ``t2t-datagen`` wrote for a gym problem (no spec file).

    Read off the data: the problem from the file names, the frame shape from the first PNG,
    the action count as the largest action recorded plus one (exact for the random and trained
    policies t2t records with unless some action was never taken; write a ``data_spec.json``
    to say otherwise), rewards stored with t2t's default offset ``-1``. Prints one line saying
    so. A directory this cannot be read from fails in one line naming why.
    """
    shards = _t2t_shards(data_dir)
    problems = sorted({problem for problem, *_ in shards})
    if len(problems) != 1:
        raise UserError(f"{data_dir} holds t2t data of {len(problems)} problems "
                        f"({', '.join(problems)}): keep one problem per data dir")
    paths = [path for *_, path in sorted(shards, key=lambda s: s[1:])]
    return _infer_t2t_spec(problems[0], tuple(paths))


@functools.lru_cache(maxsize=16)
def _infer_t2t_spec(problem: str, paths: tuple[str, ...]) -> DataSpec:
    where = paths[0].rsplit("/", 1)[0]
    try:
        first = next(iter(tf.data.TFRecordDataset(paths[0])))
    except StopIteration:
        raise UserError(f"cannot read {paths[0]} as t2t data: it is empty") from None
    feature = tf.train.Example.FromString(first.numpy()).features.feature
    missing = [k for k in ("image/encoded", "action", "reward", "done", "frame_number")
               if k not in feature]
    if missing:
        raise UserError(f"cannot read {paths[0]} as t2t gym data: no {', '.join(missing)} "
                        "field (only t2t's T2TEnv frame layout is readable without a "
                        f"{SPEC_FILE})")
    shape = tuple(int(d) for d in tf.io.decode_png(feature["image/encoded"].bytes_list.value[0])
                  .shape)
    parse = lambda b: tf.io.parse_example(b, {"action": tf.io.FixedLenFeature([1], tf.int64)})
    actions = tf.data.TFRecordDataset(list(paths)).batch(1024).map(parse)
    n = int(actions.reduce(np.int64(-1), lambda m, ex: tf.maximum(m, tf.reduce_max(ex["action"]))))
    epochs = sorted({int(_T2T_SHARD_RE.match(p.rsplit("/", 1)[-1]).group(5)) for p in paths})
    print(f"{where}: no {SPEC_FILE}, reading it as tensor2tensor data of {problem}: "
          f"{'x'.join(map(str, shape))} PNG frames, {n + 1} actions (largest recorded + 1), "
          f"reward = stored {T2T_REWARD_RANGE[0]:+d}, epochs {epochs}", flush=True)
    return DataSpec(
        problem=problem, obs_shape=shape, obs_dtype="uint8", obs_encoding="png",
        action={"kind": "discrete", "n": n + 1},
        epochs={str(e): {"source": "t2t-datagen"} for e in epochs}, style="t2t",
    )


def write_spec(data_dir: str, spec: DataSpec) -> None:
    """Writes the spec atomically (temp file + rename), like the shards."""
    path = join(data_dir, SPEC_FILE)
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


def shard_path(data_dir: str, split_name: str, index: int, count: int, epoch: int,
               t2t_problem: str | None = None) -> str:
    """``<data_dir>/<split>-<index>-of-<count>.epoch<epoch>.tfrecord``; with ``t2t_problem``,
    t2t's ``<data_dir>/<t2t_problem>-<split>-<index>-of-<count>.<epoch>``."""
    if t2t_problem is not None:
        return join(data_dir, f"{t2t_problem}-{split_name}-{index:05d}-of-{count:05d}.{epoch}")
    return join(data_dir, f"{split_name}-{index:05d}-of-{count:05d}.epoch{epoch}.tfrecord")


def shard_paths(data_dir: str, splits: list[str], epoch: int,
                t2t_problem: str | None = None) -> list[str]:
    """The file of each global shard, numbered within its split (t2t's ``-of-`` names)."""
    counts = {s: splits.count(s) for s in SPLITS}
    seen = dict.fromkeys(SPLITS, 0)
    paths = []
    for s in splits:
        paths.append(shard_path(data_dir, s, seen[s], counts[s], epoch, t2t_problem))
        seen[s] += 1
    return paths


def shard_files(data_dir: str, split_name: str, epochs: Sequence[int] | None = None,
                style: str = "imagined_rl") -> list[str]:
    """The complete shards of ``split_name`` in ``data_dir``, ordered by epoch then index, in
    our file names or (``style="t2t"``) t2t's.

    Temp files of a killed writer are never listed. ``epochs`` keeps only those epochs.
    """
    if split_name not in SPLITS:
        raise UserError(f"unknown split {split_name!r}: expected one of {', '.join(SPLITS)}")
    found = []
    if style == "t2t":
        for _, split, epoch, index, path in _t2t_shards(data_dir):
            if split == split_name and (epochs is None or epoch in epochs):
                found.append((epoch, index, path))
        return [path for _, _, path in sorted(found)]
    for path in tf.io.gfile.glob(join(data_dir, f"{split_name}-*.tfrecord")):
        m = _SHARD_RE.match(path.replace("\\", "/").rsplit("/", 1)[-1])
        if m and (epochs is None or int(m.group(4)) in epochs):
            found.append((int(m.group(4)), int(m.group(2)), path))
    return [path for _, _, path in sorted(found)]


def _t2t_shards(data_dir: str) -> list[tuple[str, str, int, int, str]]:
    """``(problem, split, epoch, index, path)`` of every file in t2t's names in ``data_dir``."""
    found = []
    for path in tf.io.gfile.glob(join(data_dir, "*-*-of-*.*")):
        m = _T2T_SHARD_RE.match(path.replace("\\", "/").rsplit("/", 1)[-1])
        if m and m.group(2) in SPLITS:
            found.append((m.group(1), m.group(2), int(m.group(5)), int(m.group(3)), path))
    return found


def join(data_dir: str, name: str) -> str:
    return data_dir.rstrip("/") + "/" + name

