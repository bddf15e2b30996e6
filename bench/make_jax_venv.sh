#!/usr/bin/env bash
# Builds the virtual environment of ppo_vs_peers.py's JAX peer (bench/jax_peer.py): rejax 0.1.3,
# gymnax 0.0.9 and jax 0.10.2 for CPU, every package pinned in jax_venv_requirements.txt. JAX
# and TensorFlow do not share a venv, so the bench runs the peer in this one. About a minute.
#
#   bench/make_jax_venv.sh          # build once (a no-op when built), print the venv's path
#   bench/make_jax_venv.sh --path   # only print where it is (or would be)
#
# It lives in ${IMAGINED_RL_JAX_VENV:-~/.cache/imagined_rl/jax-venv-<hash>}, the hash of this
# script and the requirements.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash=$(cat "$0" "$here/jax_venv_requirements.txt" | sha256sum | cut -c1-12)
venv="${IMAGINED_RL_JAX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/imagined_rl/jax-venv-$hash}"
if [[ "${1:-}" == "--path" || -f "$venv/.complete" ]]; then
  echo "$venv"
  exit 0
fi
rm -rf "$venv"  # a half-built one from a killed run
mkdir -p "$(dirname "$venv")"
"${JAX_PYTHON:-python3.11}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-deps -r "$here/jax_venv_requirements.txt" >&2
touch "$venv/.complete"
echo "$venv"
