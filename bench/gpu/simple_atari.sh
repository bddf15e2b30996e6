#!/usr/bin/env bash
# SimPLe from pixels at the paper's sizes, on a machine with a GPU and TensorFlow's CUDA build.
#
#   bash bench/gpu/simple_atari.sh                 # Freeway and Pong, seed 0
#   GAMES="pong" SEEDS="0 1 2" bash bench/gpu/simple_atari.sh
#
# What it runs, per game and seed, through bench/simple_atari.py: the SimPLe loop with
# t2t's rlmb_base_stochastic_discrete (105x80 RGB, 4 stacked frames, 15 epochs, 96k real agent
# steps; world model and PPO sizes as in the paper, float32), model-free PPO with the same conv
# policy at the same real-step budgets (25k/50k/100k) and 1M, and a random policy; mean raw
# game score, the table in bench/results/simple_atari_gpu_<set>.md. Expect many GPU-hours per game (the paper: ~ a day per run on a P100).
# Not run by this project's CI (no GPU with TensorFlow here); the same code is tested on CPU by
# tests/test_simple.py (rlmb_tiny on real Pong frames) and tests/test_one_program.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); \
print('GPUs:', gpus); sys.exit(0 if gpus else 'no GPU visible to TensorFlow: install \
tensorflow[and-cuda]==2.21.0 (see README)')"
GAMES=${GAMES:-"freeway pong"}
SEEDS=${SEEDS:-"0"}
SET=${SET:-rlmb_base_stochastic_discrete}
n=$(echo "$SEEDS" | wc -w)
envs=$(for game in $GAMES; do printf "atari_%s," "$game"; done)
python bench/simple_atari.py --envs="${envs%,}" --seeds="$n" --long_budgets=1000000 \
  --atari_loop_hparams_set="$SET" --out_name="simple_atari_gpu_${SET}"
