#!/usr/bin/env bash
# PPO and world-model training on 1 GPU vs all visible GPUs (MirroredStrategy), the same global
# batch, on a machine with 2+ GPUs and TensorFlow's CUDA build (pip install -e ".[gpu,dev]").
#
#   bash bench/gpu/distribute_scaling.sh               # 1024 CartPole envs in all
#   NUM_ENVS=4096 SECONDS=30 bash bench/gpu/distribute_scaling.sh
#
# Rows: PPO with one agent whose envs are split over the GPUs (the per-minibatch all-reduce
# inside each GPU's one XLA program, `all_reduce="xla"`; beside it the CPU's form, between
# programs, and the two forms' weight difference), PPO with two agents (whole agents per GPU:
# one XLA program each per call), and the vector world model; table in
# bench/results/distribute_scaling_gpu.md. Not run by this project's CI (no GPU with
# TensorFlow here); the same code runs on 2 logical CPU devices (the in-XLA form, which
# XLA:CPU cannot hold across devices, forced on one device) in
# tests/test_distribute.py and `python bench/distribute_scaling.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); \
print('GPUs:', gpus); sys.exit(0 if len(gpus) > 1 else 'needs 2+ GPUs visible to TensorFlow \
(tensorflow[and-cuda]==2.21.0, see README)')"
python bench/distribute_scaling.py --gpus --num_envs="${NUM_ENVS:-1024}" \
  --seconds="${SECONDS_EACH:-${SECONDS:-20}}" --out=bench/results/distribute_scaling_gpu
