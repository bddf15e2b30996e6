"""The on-disk format of recorded experience: the spec, the record fields, shard names.

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

"""

from __future__ import annotations

import dataclasses
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
                "see imagined_rl/data/format.py"
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
    path = join(data_dir, SPEC_FILE)
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


def shard_path(data_dir: str, split_name: str, index: int, count: int, epoch: int) -> str:
    """``<data_dir>/<split>-<index>-of-<count>.epoch<epoch>.tfrecord``."""
    return join(data_dir, f"{split_name}-{index:05d}-of-{count:05d}.epoch{epoch}.tfrecord")


def shard_paths(data_dir: str, splits: list[str], epoch: int) -> list[str]:
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
    for path in tf.io.gfile.glob(join(data_dir, f"{split_name}-*.tfrecord")):
        m = _SHARD_RE.match(path.replace("\\", "/").rsplit("/", 1)[-1])
        if m and (epochs is None or int(m.group(4)) in epochs):
            found.append((int(m.group(4)), int(m.group(2)), path))
    return [path for _, _, path in sorted(found)]


def join(data_dir: str, name: str) -> str:
    return data_dir.rstrip("/") + "/" + name

