"""SimPLe loop hyperparameter sets (``--loop_hparams_set=NAME``), named after tensor2tensor's
``rlmb_*`` sets. Each names the problem, the world model and PPO sets it combines."""

from __future__ import annotations

from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_hparams


@register_hparams
def rlmb_cartpole() -> HParams:
    """SimPLe on CartPole with the vector ensemble: ~1-2 minutes on a 2-core CPU."""
    return HParams(
        problem="gym_cartpole_random",
        epochs=3,
        real_steps_first=20_000,  # random-policy experience before the first model
        real_steps_per_epoch=5_000,  # then experience of the current policy, each epoch
        model="vector_ensemble",
        model_hparams_set="world_model_vector",
        model_train_steps=1_500,  # optimiser steps added each epoch
        ppo_hparams_set="ppo_cartpole",
        ppo_hparams="num_envs=16",  # overrides of the PPO set
        ppo_steps_per_epoch=200_000,  # imagined env steps each epoch
        simulated_rollout_length=200,  # imagined episode horizon (SimPLe: 50 on Atari)
        eval_episodes=16,
    )


@register_hparams
def rlmb_minatar_breakout() -> HParams:
    """SimPLe on MinAtar Breakout with the fast grid model (space-to-depth conv, ~537k imagined
    steps/s on two cores); PPO is ``ppo_minatar``'s MLP on the 10x10x4 grid. ~3.5 minutes on a
    2-core CPU; greedy real return 1.2 -> 4.6 over 6 epochs on 50k real steps (seed 1: 3.5), where
    model-free ``ppo_minatar`` scored 2.8 (3.0) on the same 50k (``bench/simple_vs_model_free.py``).
    """
    return HParams(
        problem="minatar_breakout_random",
        epochs=6,
        real_steps_first=20_000,
        real_steps_per_epoch=6_000,
        model="grid_conv",
        model_hparams_set="world_model_grid_fast",
        model_train_steps=4_000,
        ppo_hparams_set="ppo_minatar",
        ppo_hparams="num_envs=64",
        ppo_steps_per_epoch=400_000,
        simulated_rollout_length=50,  # SimPLe's horizon
        eval_episodes=32,
    )
