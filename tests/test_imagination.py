"""Imagination: PPO trains unchanged inside a learned world model, and the policy works for real."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import data, loops, registry
from imagined_rl.envs.classic import CartPole
from imagined_rl.envs.core import check_env, make_key, random_actions, split
from imagined_rl.envs.simulated import FrameStore, SimulatedBatchEnv
from imagined_rl.errors import UserError
from imagined_rl.ppo import PPO
from imagined_rl.world_models.vector import VectorEnsemble
from tests.test_world_models_vector_grid import train


@pytest.fixture(scope="module")
def cartpole_model(tmp_path_factory) -> tuple[VectorEnsemble, str]:
    """A vector ensemble fitted to 30k steps of a *random* CartPole policy."""
    data_dir = str(tmp_path_factory.mktemp("cartpole"))
    env = CartPole(8)
    data.record(env, lambda obs, key: random_actions(env.action_spec, 8, key), 30_000, data_dir,
                seed=0, steps_per_shard=5_000, progress=False)
    model = VectorEnsemble(data.load_spec(data_dir), registry.hparams("world_model_vector"))
    train(model, data_dir, model.hparams, 2000)
    return model, data_dir


def test_ppo_in_imagination_works_in_the_real_env(cartpole_model):
    model, data_dir = cartpole_model
    hp = registry.hparams("ppo_cartpole").parse("num_envs=16")
    starts = FrameStore.from_chunks(data.frame_chunks(data_dir), model.history)
    sim = SimulatedBatchEnv(model, starts, hp.num_envs, max_episode_steps=200)
    check_env(sim)
    agent = PPO(sim, hp, hp.train_steps, seed=0)  # the trainer knows nothing of world models
    while agent.iteration < agent.num_iterations:
        agent.train()
    real = loops.evaluate(CartPole(32), lambda obs, key: agent.act(obs, key, greedy=True), seed=3)
    spec = CartPole(32).action_spec
    rand = loops.evaluate(CartPole(32), lambda obs, key: random_actions(spec, 32, key), seed=3)
    # Never trained on a real step: a random policy lasts ~22 steps, this one several hundred.
    assert real.mean() >= 150 and real.mean() > 5 * rand.mean(), (real.mean(), rand.mean())


def test_simulated_env_contract(cartpole_model):
    model, data_dir = cartpole_model
    starts = FrameStore.from_chunks(data.frame_chunks(data_dir), model.history)
    sim = SimulatedBatchEnv(model, starts, 4, max_episode_steps=7)
    state, obs = sim.reset(make_key(0))
    real = starts.frames.numpy()[:int(starts.size.numpy())]
    assert all(np.any(np.all(real == o, axis=1)) for o in obs.numpy())  # starts are real frames
    step = tf.function(sim.step, jit_compile=True)
    # A step is the model's prediction (same key derivation as Environment.step) ...
    action, key = tf.zeros([4], tf.int32), make_key(99)
    _, first = step(state, action, key)
    predict = tf.function(model.predict, jit_compile=True)  # XLA draws as the step does
    predicted, _, done = predict(state["env"], action, tf.unstack(split(key))[0])
    live = ~done.numpy()
    np.testing.assert_allclose(first.obs.numpy()[live], predicted.numpy()[live], rtol=1e-5)
    np.testing.assert_allclose(first.final_obs.numpy(), predicted.numpy(), rtol=1e-5)
    # ... and episodes end at the horizon at the latest.
    truncated = []
    for i in range(7):
        state, out = step(state, tf.zeros([4], tf.int32), make_key(i + 1))
        truncated.append(out.truncated.numpy() | out.terminated.numpy())
    assert np.all(np.any(truncated, axis=0))  # every env ended within the horizon
    with pytest.raises(UserError, match="start windows have shape"):
        SimulatedBatchEnv(model, FrameStore([3], tf.float32, 1, 10), 4)
