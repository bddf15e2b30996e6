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
