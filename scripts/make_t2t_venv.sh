#!/usr/bin/env bash
# Builds the legacy virtual environment tensor2tensor 1.15.7 (t2t's last release) runs in, for
# the `t2t` tests of the bridge (tests/test_t2t_bridge.py) and for users who train t2t's models
# on our data: TF 2.15.1, keras 2.15, tensorflow-probability 0.23, numpy 1.26, gym 0.17.3, every
# package pinned in t2t_venv/requirements.txt (installed --no-deps: t2t's own metadata pins
# tensorflow-probability 0.7, which cannot install on Python 3.11), then the source patches of
# t2t_venv/patches.py. About 2-3 minutes and 2.5 GB from a cold package cache.
#
#   scripts/make_t2t_venv.sh          # build once (a no-op when built), print the venv's path
#   scripts/make_t2t_venv.sh --path   # only print where it is (or would be)
#
# It lives in ${IMAGINED_RL_T2T_VENV:-~/.cache/imagined_rl/t2t-venv-<hash>}, the hash of this
# script, the requirements and the patches: CI rebuilds it only when one of them changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash=$(cat "$0" "$here/t2t_venv/requirements.txt" "$here/t2t_venv/patches.py" | sha256sum | cut -c1-12)
venv="${IMAGINED_RL_T2T_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/imagined_rl/t2t-venv-$hash}"
if [[ "${1:-}" == "--path" || -f "$venv/.complete" ]]; then
  echo "$venv"
  exit 0
fi
python="${T2T_PYTHON:-python3.11}"
rm -rf "$venv"  # a half-built one from a killed run
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-deps -r "$here/t2t_venv/requirements.txt" >&2
"$venv/bin/python" "$here/t2t_venv/patches.py" >&2
touch "$venv/.complete"
echo "$venv"
