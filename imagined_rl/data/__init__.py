"""Recorded experience on disk: sharded TFRecords of steps in tensor2tensor's gym field layout.

Split by role: :mod:`~imagined_rl.data.format` (the spec, fields and shard names),
:mod:`~imagined_rl.data.writer` (``record``: atomic, resumable shards, every env step counted)
and :mod:`~imagined_rl.data.reader` (decoded steps; world-model windows, streamed or held in
memory; episode frames).
"""

from imagined_rl.data.format import (
    SPEC_FILE,
    DataSpec,
    load_spec,
    obs_encoding,
    shard_files,
    shard_path,
    shard_splits,
    spec_for_env,
)
from imagined_rl.data.reader import (
    WindowTable,
    frame_chunks,
    gather_windows,
    read_steps,
    resident_windows,
    sample_windows,
    verify_shards,
    windows,
)
from imagined_rl.data.writer import RecordSummary, discard_epoch, record

__all__ = [
    "SPEC_FILE",
    "DataSpec",
    "RecordSummary",
    "WindowTable",
    "discard_epoch",
    "frame_chunks",
    "gather_windows",
    "load_spec",
    "obs_encoding",
    "read_steps",
    "record",
    "resident_windows",
    "sample_windows",
    "shard_files",
    "shard_path",
    "shard_splits",
    "spec_for_env",
    "verify_shards",
    "windows",
]
