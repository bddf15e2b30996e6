"""Hparams sets of the RGB next-frame world models (``imagined_rl.world_models.rgb``).

The names follow tensor2tensor's video models (``basic_deterministic_params.py``,
``basic_stochastic.py``), the ones SimPLe (Kaiser et al., 2019) trained its Atari world models
with. Where the value here differs from t2t's, the comment says why. Differences that apply to
every set:

- ``learning_rate_constant`` is for the generic trainer's Adam at a constant rate; t2t used
  Adafactor with its own warm-up/decay schedule (1.5 x rsqrt decay, or 0.002 constant), whose
  numbers do not transfer.
- One target frame per example (t2t's ``video_num_target_frames`` was 1 for the deterministic
  model and 6 for the stochastic one): our windows hold one next frame, so scheduled sampling
  works on the last input frame instead (see ``rgb.py``).
- ``history`` is t2t's ``video_num_input_frames``; ``train_steps`` SimPLe's
  ``model_train_steps`` per epoch (15k; its first epoch used 3x).
"""

from __future__ import annotations

from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_hparams


@register_hparams
def next_frame_basic_deterministic() -> HParams:
    """SimPLe's deterministic conv next-frame model: 4 frames in, 6 strided convs down."""
    return HParams(
        history=4,  # t2t video_num_input_frames
        hidden_size=64,
        num_compress_steps=6,  # stride-2 convs: 105x80 -> 2x2
        filter_double_steps=2,  # the first 2 of them double the filters
        num_hidden_layers=2,  # 3x3 convs at the bottleneck (residual after the first)
        dropout=0.1,  # before every strided / transposed conv
        residual_dropout=0.5,  # before every bottleneck conv
        activation_fn="relu",  # "relu" or "belu" (t2t's half-ELU)
        action_injection="multi_additive",  # or "multiplicative" / "additive"
        video_modality_loss_cutoff=0.01,  # per-sub-pixel cross-entropy relu(xent - cutoff)
        video_modality_input_noise=0.0,  # next_frame_pixel_noise uses 0.05
        reward_loss_coef=1.0,  # t2t summed the frame and reward losses with weight 1
        done_loss_coef=1.0,
        sample_frames=False,  # predict: argmax pixels (False) or sample them (True)
        pixel_sampling_temperature=1.0,  # with sample_frames
        scheduled_sampling_prob=0.0,  # most input frames that are the model's own prediction
        scheduled_sampling_warmup_steps=10_000,  # t2t scheduled_sampling_decay_steps
        mixed_precision="",  # "" | "mixed_bfloat16" | "mixed_float16"
        batch_size=4,
        resident_data=True,  # train split held in memory, batches drawn in the graph
        learning_rate_constant=1e-3,
        clip_grad_norm=1.0,
        jit=True,  # XLA-compile the training step
        train_steps=15_000,
    )


@register_hparams
def next_frame_pixel_noise() -> HParams:
    """SimPLe's default deterministic set: 5% of input pixels replaced by the background."""
    hp = next_frame_basic_deterministic()
    hp.video_modality_input_noise = 0.05
    return hp


def _latent_defaults() -> dict:
    """The discrete-latent hparams of t2t's ``next_frame_basic_stochastic_discrete``."""
    return dict(
        bottleneck_bits=128,  # the latent: 128 bits, predicted 8 at a time by the prior
        bottleneck_noise=0.1,  # fraction of posterior bits flipped while training
        discretize_warmup_steps=40_000,  # tanh -> hard bits, mixed in linearly over these
        latent_rnn_warmup_steps=40_000,  # prior-sampled bits / latent use ramp up over these
        latent_rnn_max_sampling=0.5,  # most bits replaced by the prior's samples in training
        latent_use_max_probability=0.8,  # most examples that see the latent in training
        latent_predictor_state_size=128,  # the prior LSTM
        latent_predictor_temperature=1.0,  # predict: prior sampling temperature (0: argmax)
        complex_addn=True,  # inject bits as x * sigmoid(Wb) + Vb (False: x + Wb)
    )


@register_hparams
def next_frame_basic_stochastic_discrete() -> HParams:
    """SimPLe's world model: the deterministic model plus a 128-bit discrete latent."""
    hp = next_frame_basic_deterministic()
    hp.override_from_dict(dict(
        dropout=0.15, filter_double_steps=3, hidden_size=96, video_modality_loss_cutoff=0.03,
        # t2t: max 1.0 over 6 target frames; here over the last input frame only, whose
        # "previous-window" prediction lacks the previous action, so at most half of them.
        scheduled_sampling_prob=0.5, scheduled_sampling_warmup_steps=40_000,
    ))
    for name, value in _latent_defaults().items():
        hp.add_hparam(name, value)
    return hp


@register_hparams
def next_frame_tiny() -> HParams:
    """A very small model of either kind, for CPU tests (t2t's tiny set, plus a tiny latent)."""
    # t2t's tiny: hidden 32, 1 hidden layer, 2 compress steps, 1 doubling; half the width here
    # (the 256-way logits at full resolution dominate a CPU step), no dropout, short warm-ups
    # and a high learning rate so that a test sees the loss fall within a few dozen steps.
    hp = next_frame_basic_stochastic_discrete()
    hp.override_from_dict(dict(
        hidden_size=16, num_hidden_layers=1, num_compress_steps=2, filter_double_steps=1,
        dropout=0.0, residual_dropout=0.0, scheduled_sampling_prob=0.0,
        scheduled_sampling_warmup_steps=100, bottleneck_bits=16, bottleneck_noise=0.1,
        discretize_warmup_steps=100, latent_rnn_warmup_steps=100,
        latent_predictor_state_size=32, batch_size=8, learning_rate_constant=1e-2,
        train_steps=200,
    ))
    return hp
