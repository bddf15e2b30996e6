"""The run directory: one ``config.json`` that a rerun must match to resume, and the JSON-lines
logs beside it. Every runner (model-free PPO, world-model training, the SimPLe loop) claims its
directory and keeps its logs through these few functions."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from imagined_rl.errors import UserError

CONFIG = "config.json"


def read_config(output_dir: str) -> dict[str, Any] | None:
    """The ``config.json`` of ``output_dir``, or None for a new directory."""
    path = os.path.join(output_dir, CONFIG)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_config(output_dir: str, what: str) -> dict[str, Any]:
    """The ``config.json`` of an existing run, or a one-line :class:`UserError` naming ``what``
    ("PPO run", ...) when there is none."""
    config = read_config(output_dir)
    if config is None:
        raise UserError(f"no {what} in '{output_dir}' (missing {CONFIG}); train one first")
    return config


def check(output_dir: str, config: dict[str, Any], what: str) -> None:
    """Raises a one-line :class:`UserError` naming the differing settings when ``output_dir``
    already holds a run whose config is not ``config`` (``what``: "a PPO run", ...)."""
    old = read_config(output_dir)
    config = json.loads(json.dumps(config))  # tuples -> lists, as on disk
    if old is None or old == config:
        return
    mine, theirs = _flat(config), _flat(old)
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    raise UserError(f"'{output_dir}' holds {what} with other settings ({', '.join(diff)}); use "
                    "another --output_dir or the same flags to resume")


def claim(output_dir: str, config: dict[str, Any], what: str) -> None:
    """Checks ``output_dir`` can hold this run (see :func:`check`) and writes its config."""
    os.makedirs(output_dir, exist_ok=True)
    check(output_dir, config, what)
    atomic_write(os.path.join(output_dir, CONFIG), json.dumps(config, indent=1))


def atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temp file and a rename: never half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none if it does not exist). A last line cut short by a
    kill mid-append is dropped (the next :func:`keep_jsonl` rewrites the file without it)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise UserError(f"{path}: line {i + 1} is not JSON; the run directory is damaged"
                                ) from None
    return rows


def keep_jsonl(path: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Rewrites a JSON-lines log with only the records ``keep`` accepts (on resume: those up to
    the restored checkpoint, so a rerun never logs a point twice); returns them."""
    rows = [r for r in read_jsonl(path) if keep(r)]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"hparams": {"lr": 1}}`` -> ``{"hparams.lr": 1}``: names for the settings that differ."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}
