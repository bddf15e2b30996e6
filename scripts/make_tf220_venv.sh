#!/usr/bin/env bash
# Builds a second virtual environment with TensorFlow 2.20 (tensorflow-tpu's newest release, so
# what a TPU VM runs) and this checkout installed in it, for tests/test_tf220.py: the smoke
# tests on 2.20 while CI's main venv tests 2.21. The packages are cached in
# ${IMAGINED_RL_TF220_VENV:-~/.cache/imagined_rl/tf220-venv-<hash of this script and setup.py>}
# (about 1-2 minutes from a cold package cache); this checkout is (re)installed each run
# (editable, no dependencies: seconds).
#
#   scripts/make_tf220_venv.sh          # build or refresh, print the venv's path
#   scripts/make_tf220_venv.sh --path   # only print where it is (or would be)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
hash=$(cat "$0" "$repo/setup.py" | sha256sum | cut -c1-12)
venv="${IMAGINED_RL_TF220_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/imagined_rl/tf220-venv-$hash}"
if [[ "${1:-}" == "--path" ]]; then
  echo "$venv"
  exit 0
fi
if [[ ! -f "$venv/.complete" ]]; then
  rm -rf "$venv"  # a half-built one from a killed run
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -e "$repo[dev]" "tensorflow-cpu==2.20.0" >&2
  touch "$venv/.complete"
fi
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >&2
echo "$venv"
