"""PPO on images: conv torsos (Nature DQN, IMPALA), the seed axis through them, stacked Atari
frames through the adapter (the conv agent that learns MinAtar Breakout: test_minatar_ppo.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import registry
from imagined_rl.envs.atari import make_atari
from imagined_rl.envs.core import Discrete, Environment, FrameStack
from imagined_rl.hparams_lib import HParamsError
from imagined_rl.ppo import PPO, init_torso, torso


class Pixels(Environment):
    """A tiny image env: reward 1 for action 1 when the top-left pixel is lit, else 0."""

    observation_spec = tf.TensorSpec((12, 10, 3), tf.uint8)
    action_spec = Discrete(2)

    def reset_env(self, key):
        lit = tf.random.stateless_uniform([self.num_envs], key) < 0.5
        return lit, self._obs(lit)

    def _obs(self, lit):
        img = tf.zeros([self.num_envs, 12, 10, 3], tf.uint8)
        mask = tf.reshape(tf.one_hot(0, 120 * 3, dtype=tf.uint8), [1, 12, 10, 3])
        return img + mask * tf.cast(lit, tf.uint8)[:, None, None, None] * 255

    def step_env(self, lit, action, key):
        reward = tf.cast(tf.equal(action, tf.cast(lit, tf.int32)), tf.float32)
        new = tf.random.stateless_uniform([self.num_envs], key) < 0.5
        return new, self._obs(new), reward, tf.zeros([self.num_envs], tf.bool)


@pytest.mark.parametrize("network", ["nature_cnn", "impala_cnn"])
def test_torso_shapes_and_one_agent_per_seed(network):
    hp = registry.hparams("ppo_base").parse(f"network={network},torso_units=32")
    layers, width = init_torso(network, (12, 10, 3), hp, num_seeds=2, seed=0)
    x = tf.random.uniform([2, 5, 12, 10, 3])
    out = torso(network, layers, x, hp)
    assert out.shape == (2, 5, width) == (2, 5, 32)
    same = tf.stack([x[0], x[0]])  # the same images through two agents' different weights
    a, b = tf.unstack(torso(network, layers, same, hp))
    assert not np.allclose(a.numpy(), b.numpy())


@pytest.mark.parametrize("extra", ["network=nature_cnn,conv_filters=[8],conv_kernels=[3],"
                                   "conv_strides=[1],torso_units=32",
                                   "network=impala_cnn,impala_channels=[8],torso_units=32,"
                                   "share_torso=False"])
def test_conv_agents_learn_a_pixel_task_with_two_seeds(extra):
    hp = registry.hparams("ppo_base").parse(
        f"{extra},num_seeds=2,num_envs=8,epoch_length=16,policy_layers=[],value_layers=[],"
        "obs_scale=0.00392156862745098,learning_rate_constant=3e-3,iterations_per_call=8")
    agent = PPO(Pixels(16, max_episode_steps=16), hp, total_env_steps=40 * 128, seed=0)
    first = agent.train(1)["return_mean"][0]
    while agent.iteration < agent.num_iterations:
        out = agent.train()
    # random play earns 8 of 16; both agents learn to read the pixel
    assert np.all(out["return_mean"][-1] >= 14.5), (first, out["return_mean"][-1])
    params = [agent.params["pi"][0][0].numpy()[s] for s in range(2)]
    assert not np.allclose(*params)  # two agents, not one


def test_conv_torso_refuses_vector_observations():
    from imagined_rl.envs.classic import CartPole

    hp = registry.hparams("ppo_cartpole").parse("network=nature_cnn")
    with pytest.raises(HParamsError, match="needs image observations"):
        PPO(CartPole(4), hp, 1000)
    with pytest.raises(HParamsError, match="choose one of"):
        PPO(CartPole(4), registry.hparams("ppo_cartpole").parse("network=resnet"), 1000)


def test_act_without_a_key_draws_fresh_actions():
    from imagined_rl.envs.classic import CartPole

    agent = PPO(CartPole(4), registry.hparams("ppo_cartpole"), 1000)
    obs = np.zeros([256, 4], np.float32)
    a, b = agent.act(obs).numpy(), agent.act(obs).numpy()
    assert 0.3 < a.mean() < 0.7 and np.mean(a != b) > 0.2  # an untrained policy is ~uniform
    greedy = agent.act(obs, temperature=0.0).numpy()
    assert np.all(greedy == greedy[0])  # temperature 0 is the argmax


def test_ppo_runs_on_stacked_atari_frames():
    hp = registry.hparams("ppo_simple_atari").parse(
        "num_envs=2,epoch_length=8,num_minibatches=2,optimization_epochs=1,iterations_per_call=1")
    env = FrameStack(make_atari("pong", 2, seed=0), 4)
    assert env.observation_spec.shape == (105, 80, 12)
    agent = PPO(env, hp, total_env_steps=32, seed=0)
    assert agent.jit == bool(tf.config.list_logical_devices("GPU"))  # XLA convs: not on a CPU
    out = agent.train(2)
    assert np.all(np.isfinite(out["policy_loss"])) and agent.env_steps == 2 * 8 * 2
    env.close()
