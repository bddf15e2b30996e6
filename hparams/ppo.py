"""Named PPO hyperparameter sets (``--hparams_set=NAME``), tensor2tensor's names where they exist.

Differences from tensor2tensor worth knowing: ``num_minibatches`` (minibatches per epoch) replaces
t2t's ``optimization_batch_size`` (a slice length in time steps), ``num_envs`` is t2t's
``num_agents``, and ``train_steps`` counts env steps per agent.
"""

from __future__ import annotations

from imagined_rl.hparams_lib import HParams
from imagined_rl.registry import register_hparams


@register_hparams
def ppo_base() -> HParams:
    """Defaults every PPO set starts from (PureJaxRL's CartPole settings)."""
    return HParams(
        num_envs=4,  # envs per agent
        num_seeds=1,  # independent agents trained together in one compiled call
        epoch_length=128,  # rollout steps per env per iteration
        optimization_epochs=4,
        num_minibatches=4,
        learning_rate_constant=2.5e-4,
        learning_rate_decay=True,  # anneal linearly to 0 over train_steps
        clipping_coef=0.2,
        gae_gamma=0.99,
        gae_lambda=0.95,
        entropy_loss_coef=0.01,
        value_loss_coef=0.5,
        clip_grad_norm=0.5,
        clip_value_loss=True,
        normalize_advantages=True,
        policy_layers=(64, 64),
        value_layers=(64, 64),
        activation="tanh",
        init_logstd=0.0,  # Gaussian policies: initial log standard deviation
        reward_scale=1.0,  # rewards are multiplied by this for learning (not for reporting)
        obs_scale=1.0,  # observations are multiplied by this (1/255 for uint8 frames)
        iterations_per_call=16,  # PPO iterations per compiled call (host touched once per call)
        jit=True,  # XLA-compile the training graph
        train_steps=500_000,  # env steps per agent
        # A sweep in one compiled call: one value per agent (num_seeds of them) for any of
        # learning_rate_constant, entropy_loss_coef, clipping_coef, gae_gamma, gae_lambda,
        # e.g. "learning_rate_constant=1e-4|3e-4|1e-3;gae_gamma=0.99|0.99|0.9" (CLI:
        # --hparams_sweep=...); the plain values apply where it says nothing.
        hparams_sweep="",
        # The torso: "mlp" (policy_layers/value_layers on the flattened observation), or a conv
        # torso on image observations ("nature_cnn", "impala_cnn") under the same MLP heads.
        network="mlp",
        share_torso=True,  # conv torsos: one for policy and value (False: one each)
        conv_filters=(32, 64, 64),  # nature_cnn (Mnih et al. 2015)
        conv_kernels=(8, 4, 3),
        conv_strides=(4, 2, 1),
        impala_channels=(16, 32, 32),  # impala_cnn (Espeholt et al. 2018)
        torso_units=512,  # the dense ReLU layer after the convs
        # Conv torsos on a CPU-only machine run as a plain TF graph unless this is set: XLA:CPU
        # took 16.5 s per PPO iteration in imagination where TF's own kernels took 2.5 s
        # (its conv gradients). With a GPU/TPU, jit=True compiles them with XLA as usual.
        xla_convs_on_cpu=False,
    )


@register_hparams
def ppo_original_params() -> HParams:
    """tensor2tensor's set after the original PPO paper, with its short epochs for imagination."""
    hp = ppo_base()
    hp.override_from_dict(dict(
        learning_rate_constant=2.5e-4, clipping_coef=0.1, gae_gamma=0.99, gae_lambda=0.95,
        entropy_loss_coef=0.01, value_loss_coef=1.0, optimization_epochs=3, epoch_length=50,
        num_envs=16, num_minibatches=4,
    ))
    return hp


@register_hparams
def ppo_atari_base() -> HParams:
    """tensor2tensor's Atari (Pong) base set."""
    hp = ppo_base()
    hp.override_from_dict(dict(
        learning_rate_constant=1e-4, clipping_coef=0.2, gae_gamma=0.985, gae_lambda=0.985,
        entropy_loss_coef=0.003, value_loss_coef=1.0, optimization_epochs=3, epoch_length=200,
        num_envs=16, num_minibatches=4, clip_grad_norm=0.5, obs_scale=1.0 / 255,
    ))
    return hp


@register_hparams
def ppo_cartpole() -> HParams:
    """Tuned for CartPole-v1: solves (greedy return >= 475) within 300k steps."""
    hp = ppo_base()
    hp.train_steps = 300_000
    return hp


@register_hparams
def ppo_pendulum() -> HParams:
    """Tuned for Pendulum-v1 (continuous torque): short horizon, many epochs, scaled rewards."""
    hp = ppo_base()
    hp.override_from_dict(dict(
        num_envs=16, epoch_length=256, optimization_epochs=10, num_minibatches=32,
        learning_rate_constant=1e-3, gae_gamma=0.9, gae_lambda=0.95, entropy_loss_coef=0.0,
        clip_value_loss=False, reward_scale=0.1, train_steps=150_000, iterations_per_call=4,
    ))
    return hp


@register_hparams
def ppo_minatar() -> HParams:
    """MinAtar (10x10xC binary grids) through the gymnasium adapter, with a one-layer MLP."""
    hp = ppo_base()
    hp.override_from_dict(dict(
        num_envs=16, epoch_length=64, learning_rate_constant=1e-3, policy_layers=(128,),
        value_layers=(128,), iterations_per_call=8, train_steps=200_000,
    ))
    return hp


@register_hparams
def ppo_minatar_cnn() -> HParams:
    """MinAtar with the conv torso of its paper (Young & Tian 2019: 16 3x3 filters, 128 units)
    under linear heads; SAME padding (the paper: VALID), so the dense layer sees 10x10x16."""
    hp = ppo_minatar()
    hp.override_from_dict(dict(
        network="nature_cnn", conv_filters=(16,), conv_kernels=(3,), conv_strides=(1,),
        torso_units=128, policy_layers=(), value_layers=(),
    ))
    return hp


@register_hparams
def ppo_minatar_long() -> HParams:
    """Model-free MinAtar at 10M steps, the baseline a 100k-step result is read against:
    gymnax-blines' PPO for the MinAtar games (64 envs x 128 steps, 4 epochs x 8 minibatches,
    constant lr 5e-4, gamma 0.999, a 256x2 ReLU MLP on the flattened grid; theirs warms the
    learning rate up over the first 5%). Figures: ``bench/sample_efficiency.py``."""
    hp = ppo_minatar()
    hp.override_from_dict(dict(
        num_envs=64, epoch_length=128, num_minibatches=8, learning_rate_constant=5e-4,
        learning_rate_decay=False, gae_gamma=0.999, policy_layers=(256, 256),
        value_layers=(256, 256), activation="relu", iterations_per_call=8,
        train_steps=10_000_000,
    ))
    return hp


@register_hparams
def ppo_simple_atari() -> HParams:
    """SimPLe's PPO on 4 stacked 105x80 RGB frames: ``ppo_original_params`` with lr 1e-4 (t2t's
    ``rlmb_base`` overrides it so) and t2t's ``feed_forward_cnn_small_categorical_policy``
    torso (two 5x5 stride-2 convs of 32 filters, 128 ReLU units, linear heads); uint8 frames
    scaled by 1/255 in the graph. Not t2t's: its epoch embedding and dropout."""
    hp = ppo_original_params()
    hp.override_from_dict(dict(
        learning_rate_constant=1e-4, network="nature_cnn", conv_filters=(32, 32),
        conv_kernels=(5, 5), conv_strides=(2, 2), torso_units=128, policy_layers=(),
        value_layers=(), obs_scale=1.0 / 255, activation="relu",
    ))
    return hp
