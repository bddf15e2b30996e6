"""SimPLe's RGB world models (``imagined_rl.world_models.rgb``) on a few hundred real Pong frames.

A module fixture records ~300 random-policy Pong steps (105x80x3) once; the tests build the
models with the ``next_frame_tiny`` hparams and check the contract's shapes and dtypes under an
XLA-compiled ``tf.function``, that both models overfit one fixed batch (the training loss falls
by a set factor), the stochastic model's latent (posterior and prior bits, the prior's loss
falling), the bfloat16 option and the one-line error for non-RGB data. Training here is eager
(``jit_compile=False``), faster than XLA's compile time for a few steps on a CPU.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data, registry
from imagined_rl.data import DataSpec
from imagined_rl.envs import random_actions
from imagined_rl.errors import UserError
from imagined_rl.world_models import rgb
from imagined_rl.world_models.base import WorldModel

MODELS = ("next_frame_basic_deterministic", "next_frame_basic_stochastic_discrete")
OVERFIT_STEPS = 25
OVERFIT_FACTOR = 3.0  # the loss on the fixed batch must fall at least this much


@pytest.fixture(scope="module")
def pong(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data dir with ~300 random-policy Pong steps (one train shard, episodes cut there)."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from imagined_rl.envs.atari import make_atari

    data_dir = str(tmp_path_factory.mktemp("pong"))
    env = make_atari("pong", 2)
    try:
        data.record(env, lambda obs, key: random_actions(env.action_spec, env.num_envs, key),
                    300, data_dir, seed=0, steps_per_shard=300, dev_fraction=0.0,
                    finish_episodes=False, progress=False)
    finally:
        env.close()
    return data_dir


@pytest.fixture(scope="module")
def batch(pong: str) -> dict[str, tf.Tensor]:
    """One fixed batch of 8 shuffled windows (4 frames in, the next out)."""
    ds = data.windows(pong, "train", history=4, batch_size=8, seed=3, drop_remainder=True)
    return next(iter(ds))


def tiny(model: str, spec: DataSpec, **overrides) -> WorldModel:
    hp = registry.hparams("next_frame_tiny")
    hp.override_from_dict(overrides)
    return registry.model(model)(spec, hp)


def train(model: WorldModel, batch: dict[str, tf.Tensor], steps: int) -> list[dict[str, float]]:
    """``steps`` Adam steps on the same batch, as the generic trainer takes them; the metrics
    of every step (``loss`` included)."""
    variables = model.train_variables
    optimizer = tf.keras.optimizers.Adam(float(model.hparams.learning_rate_constant))

    @tf.function(jit_compile=False)
    def step(key: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss, metrics = model.loss(batch, True, key)
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, float(model.hparams.clip_grad_norm))
        optimizer.apply_gradients(zip(grads, variables))
        return dict(metrics, loss=loss)

    history = []
    for i in range(steps):
        history.append({k: float(v) for k, v in step(tf.constant([7, i])).items()})
    return history


def test_hparams_sets_and_registration() -> None:
    assert registry.model("next_frame_basic_deterministic") is rgb.BasicDeterministic
    assert registry.model("next_frame_basic_stochastic_discrete") is rgb.BasicStochasticDiscrete
    hp = registry.hparams("next_frame_basic_stochastic_discrete")
    assert (hp.history, hp.hidden_size, hp.bottleneck_bits) == (4, 96, 128)
    assert registry.hparams("next_frame_basic_deterministic").num_compress_steps == 6
    bits = tf.constant([[1.0, -1, -1, 1, -1, -1, -1, 1] * 2])
    np.testing.assert_array_equal(rgb.bits_to_ints(bits).numpy(), [[137, 137]])
    np.testing.assert_array_equal(rgb.ints_to_bits(rgb.bits_to_ints(bits)).numpy(), bits)


@pytest.mark.parametrize("name", MODELS)
def test_predict_shapes_under_xla(pong: str, batch: dict[str, tf.Tensor], name: str) -> None:
    model = tiny(name, data.load_spec(pong))
    predict = tf.function(model.predict, jit_compile=True)
    inputs, action = batch["inputs"][:3], batch["action"][:3]
    frame, reward, done = predict(inputs, tf.cast(action, tf.int64), tf.constant([1, 2]))
    assert frame.dtype == tf.uint8 and frame.shape == (3, 105, 80, 3)
    assert reward.dtype == tf.float32 and reward.shape == (3,)
    assert done.dtype == tf.bool and done.shape == (3,)
    assert set(np.unique(reward.numpy())) <= {-1.0, 0.0, 1.0}
    # Fed back as the newest input frame, the prediction makes the next step.
    window = tf.concat([inputs[:, 1:], frame[:, None]], axis=1)
    frame2, _, _ = predict(window, tf.cast(action, tf.int64), tf.constant([1, 3]))
    assert frame2.shape == frame.shape
    # Deterministic given the key.
    again, _, _ = predict(inputs, tf.cast(action, tf.int64), tf.constant([1, 2]))
    np.testing.assert_array_equal(again.numpy(), frame.numpy())


@pytest.mark.parametrize("name", MODELS)
def test_overfits_a_fixed_batch(batch: dict[str, tf.Tensor], pong: str, name: str) -> None:
    model = tiny(name, data.load_spec(pong))
    start = time.perf_counter()
    history = train(model, batch, OVERFIT_STEPS)
    per_step = (time.perf_counter() - start) / OVERFIT_STEPS
    first, last = history[0]["loss"], min(h["loss"] for h in history[-3:])
    print(f"{name}: loss {first:.3f} -> {last:.3f} in {OVERFIT_STEPS} steps "
          f"({per_step:.2f} s/step incl. tracing); frame_xent {history[0]['frame_xent']:.3f} -> "
          f"{history[-1]['frame_xent']:.3f}")
    assert np.isfinite([h["loss"] for h in history]).all()
    assert last * OVERFIT_FACTOR <= first
    assert history[-1]["frame_xent"] < 1.0  # from ln(256) = 5.5: the colours are learnt
    assert int(model.train_step_counter.numpy()) == OVERFIT_STEPS
    if name == "next_frame_basic_stochastic_discrete":
        prior = [h["latent_prior_loss"] for h in history]
        print(f"  latent_prior_loss {prior[0]:.3f} -> {prior[-1]:.3f}")
        assert prior[0] == pytest.approx(np.log(256), rel=0.1)  # 8 bits at a time, uniform
        assert min(prior[-3:]) < 0.7 * prior[0]


def test_stochastic_latent_bits(pong: str, batch: dict[str, tf.Tensor]) -> None:
    model = tiny("next_frame_basic_stochastic_discrete", data.load_spec(pong))
    bits_n = int(model.hparams.bottleneck_bits)
    inputs, action, targets = batch["inputs"], batch["action"], batch["targets"]
    posterior = model.posterior_bits(inputs, action, targets)
    prior = model.prior_bits(inputs, action, tf.constant([5, 6]))
    for bits in (posterior, prior):
        assert bits.shape == (8, bits_n) and bits.dtype == tf.float32
        assert set(np.unique(bits.numpy())) <= {-1.0, 1.0}
    # The prior samples from its key; argmax sampling (temperature 0) ignores it.
    x, _ = model._encode(inputs, model.action_features(action), False, tf.constant([0, 0]))
    a = model.sample_prior(x, tf.constant([1, 1]), temperature=0.0)
    b = model.sample_prior(x, tf.constant([2, 2]), temperature=0.0)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Schedules: the latent is mostly off at step 0 and used with p -> 0.8 after the warm-up.
    hp = model.hparams
    assert float(rgb.inverse_lin(0, hp.latent_rnn_warmup_steps)) == pytest.approx(0.01)
    assert float(rgb.inverse_lin(10**6, hp.latent_rnn_warmup_steps)) == 1.0


def test_scheduled_sampling_pass(pong: str, batch: dict[str, tf.Tensor]) -> None:
    model = tiny("next_frame_basic_deterministic", data.load_spec(pong),
                 scheduled_sampling_prob=1.0, scheduled_sampling_warmup_steps=1)
    model.train_step_counter.assign(10)  # past the warm-up: every last frame is replaced
    assert float(model.scheduled_sampling_probability(model.train_step_counter)) == 1.0
    loss, metrics = model.loss(batch, True, tf.constant([0, 1]))
    assert metrics["scheduled_sampling_prob"] == 1.0
    assert np.isfinite(float(metrics["scheduled_sampling_frame_loss"]))
    parts = ("scheduled_sampling_frame_loss", "frame_loss", "reward_ce", "done_bce")
    assert float(loss) == pytest.approx(sum(float(metrics[p]) for p in parts), rel=1e-5)
    assert int(model.train_step_counter.numpy()) == 11
    # Evaluation has no scheduled sampling and leaves the counter alone.
    _, metrics = model.loss(batch, False, tf.constant([0, 1]))
    assert "scheduled_sampling_prob" not in metrics
    assert int(model.train_step_counter.numpy()) == 11


def test_adapt_sets_output_biases(pong: str, batch: dict[str, tf.Tensor]) -> None:
    model = tiny("next_frame_basic_deterministic", data.load_spec(pong))
    before, _ = model.loss(batch, False, tf.constant([0, 0]))
    model.adapt(tf.data.Dataset.from_tensors(batch))
    after, metrics = model.loss(batch, False, tf.constant([0, 0]))
    assert float(after) < 0.5 * float(before)  # the colour histogram alone explains most pixels
    assert float(metrics["frame_xent"]) < 1.0


def test_mixed_bfloat16(pong: str, batch: dict[str, tf.Tensor]) -> None:
    model = tiny("next_frame_basic_stochastic_discrete", data.load_spec(pong),
                 mixed_precision="mixed_bfloat16", scheduled_sampling_prob=0.5)
    assert model.inputs_embed.compute_dtype == "bfloat16"
    assert model.inputs_embed.variable_dtype == "float32"
    loss, metrics = model.loss(batch, True, tf.constant([0, 1]))
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert all(v.dtype == tf.float32 for v in metrics.values())
    out = model.forward(batch["inputs"], model.action_features(batch["action"]), None, False,
                        tf.constant([0, 2]))
    assert out.logits.dtype == tf.float32 and out.logits.shape == (8, 105, 80, 3, 256)
    frame, reward, done = model.predict(batch["inputs"], batch["action"], tf.constant([0, 3]))
    assert (frame.dtype, reward.dtype, done.dtype) == (tf.uint8, tf.float32, tf.bool)


def test_rejects_vector_data_and_bad_hparams() -> None:
    cartpole = DataSpec("cartpole", (4,), "float32", "float", {"kind": "discrete", "n": 2})
    for name in MODELS:
        with pytest.raises(UserError, match="takes rgb observations") as err:
            tiny(name, cartpole)
        assert "\n" not in str(err.value)
    frames = DataSpec("pong", (105, 80, 3), "uint8", "png", {"kind": "discrete", "n": 6})
    with pytest.raises(UserError, match="mixed_precision must be one of"):
        tiny(MODELS[0], frames, mixed_precision="fp8")
    with pytest.raises(UserError, match="bottleneck_bits must be a positive multiple of 8"):
        tiny(MODELS[1], frames, bottleneck_bits=12)


def test_mixed_float16_trains_with_loss_scaling(pong: str, tmp_path) -> None:
    """float16 gradients underflow without a loss scale: the trainer wraps Adam in Keras'
    LossScaleOptimizer (gradients unscaled, then clipped) and the loss stays finite."""
    from imagined_rl.world_models.trainer import ModelRunConfig, ModelTrainer

    hp = registry.hparams("next_frame_tiny")
    hp.override_from_dict({"mixed_precision": "mixed_float16"})
    config = ModelRunConfig("next_frame_basic_deterministic", "next_frame_tiny", hp.values(),
                            pong, 0)
    trainer = ModelTrainer(config, str(tmp_path))
    assert isinstance(trainer.optimizer, tf.keras.optimizers.LossScaleOptimizer)
    assert trainer.model.inputs_embed.compute_dtype == "float16"
    record = trainer.train(4, log_every=2, progress=False)
    assert int(trainer.step.numpy()) == 4 and np.isfinite(record["loss"])
