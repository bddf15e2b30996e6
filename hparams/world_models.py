"""Named world-model hyperparameter sets (``--hparams_set=NAME``), one per model family.

Besides each family's architecture, a set holds what the generic world-model trainer reads:
``learning_rate_constant``, ``batch_size``, ``train_steps`` (optimizer steps) and ``history``
(the number of input observations, also the window length the data are read with).
"""

from __future__ import annotations

from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_hparams


@register_hparams
def world_model_vector() -> HParams:
    """``vector_ensemble``: 5 MLPs (2x128 swish) over (obs, action), MBPO-style; fast on a CPU."""
    return HParams(
        history=1,
        ensemble_size=5,
        hidden_layers=(128, 128),
        activation="swish",
        weight_decay=1e-5,  # L2 on the weights, added to the loss
        bootstrap=True,  # each member trains on its own resample of every batch
        predict_mode="random",  # "random": one member per sample (PETS TS1); "mean": average
        adapt_batches=20,  # batches read to fit the normalisation
        learning_rate_constant=1e-3,
        batch_size=256,
        train_steps=5_000,
    )


@register_hparams
def world_model_grid() -> HParams:
    """``grid_conv``: 3x3 convs at full resolution with action FiLM, for MinAtar's 10x10xC."""
    return HParams(
        history=2,
        filters=64,
        conv_layers=2,
        residual_blocks=1,
        head_units=64,
        reward_values=(-1.0, 0.0, 1.0),  # reward classes (SimPLe); MinAtar's rewards are 0/1
        frame_loss_weight=1.0,
        sample=False,  # predict: sample cells from their Bernoulli instead of thresholding
        adapt_batches=20,
        learning_rate_constant=1e-3,
        batch_size=128,
        train_steps=10_000,
    )


@register_hparams
def world_model_grid_fast() -> HParams:
    """``world_model_grid`` slimmed for imagination speed on CPUs (~95x fewer FLOPs a step).

    It needs more optimiser steps: 3000 reach ~40% exactly predicted Breakout frames.
    """
    hp = world_model_grid()
    hp.filters = 8
    hp.residual_blocks = 0
    hp.head_units = 32
    return hp
