"""PPO from the core trains unchanged on native MinAtar Breakout (in the graph, exact to the
``minatar`` package), with the MLP (``ppo_minatar``) and with the MinAtar paper's conv torso
(``ppo_minatar_cnn``)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import loops, registry
from imagined_rl.envs.core import random_actions
from imagined_rl.ppo import PPO


def make_minatar(game: str, num_envs: int, seed: int = 0):
    return registry.problem(f"minatar_{game}_random").make_env(num_envs, seed=seed)


@pytest.mark.parametrize("hparams_set", ["ppo_minatar", "ppo_minatar_cnn"])
def test_ppo_beats_random_on_minatar_breakout(hparams_set):
    """~45 s each: a random paddle scores ~0.5 a game; after 100k steps the MLP scores ~5 and
    the conv agent ~5.5."""
    hp = registry.hparams(hparams_set).parse("train_steps=100000")
    agent = PPO(make_minatar("breakout", hp.num_envs, seed=0), hp, hp.train_steps, seed=0)
    while agent.iteration < agent.num_iterations:
        agent.train()
    spec = agent.env.action_spec
    random = loops.evaluate(make_minatar("breakout", 32, seed=7),
                            lambda obs, key: random_actions(spec, 32, key), seed=1)
    trained = loops.evaluate(make_minatar("breakout", 32, seed=7),
                             lambda obs, key: agent.act(obs, key, greedy=True), seed=1)
    assert tf.is_tensor(agent.act(np.zeros([2, 10, 10, 4], np.uint8)))
    assert trained.mean() >= random.mean() + 2.5, (trained.mean(), random.mean())
