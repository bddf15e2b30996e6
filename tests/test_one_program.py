"""Imagination and PPO are one device program: PPO's compiled train call inside a
``SimulatedBatchEnv`` (grid and RGB world models) lowers to a single XLA module with no host
callbacks, and reads the world model's weights as its inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import registry
from imagined_rl.data import DataSpec
from imagined_rl.envs.core import make_key
from imagined_rl.envs.simulated import FrameStore, SimulatedBatchEnv
from imagined_rl.ppo import PPO

BREAKOUT = DataSpec("minatar_breakout", (10, 10, 4), "uint8", "bytes",
                    {"kind": "discrete", "n": 3})
PONG = DataSpec("pong", (105, 80, 3), "uint8", "png", {"kind": "discrete", "n": 6})
# What a program that leaves the device would contain (host callbacks, transfers, PyFunc).
HOST_OPS = re.compile(r"infeed|outfeed|\bsend\b|\brecv\b|send-done|recv-done|PyFunc|"
                      r"host|py_func|EagerPyFunc", re.IGNORECASE)


def _store(spec: DataSpec, history: int) -> FrameStore:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2 if spec.obs_encoding == "bytes" else 256,
                          size=(64, *spec.obs_shape)).astype(np.uint8)
    episode = np.repeat([0, 1], 32)
    return FrameStore.from_chunks([(frames, episode, np.arange(64) % 32 == 31)], history)


@pytest.mark.parametrize("model_name,hparams_set,spec,ppo_set,extra", [
    ("grid_conv", "world_model_grid_fast", BREAKOUT, "ppo_minatar_cnn", ""),
    ("next_frame_basic_stochastic_discrete", "next_frame_tiny", PONG, "ppo_simple_atari",
     "num_envs=4,epoch_length=4,num_minibatches=2,optimization_epochs=1"),
])
def test_ppo_in_imagination_is_one_xla_program(model_name, hparams_set, spec, ppo_set, extra):
    model = registry.model(model_name)(spec, registry.hparams(hparams_set))
    store = _store(spec, model.history)
    model.predict(store.sample(2, make_key(0)), tf.zeros([2], tf.int32), make_key(1))  # build
    hp = registry.hparams(ppo_set).parse(  # XLA, as on a GPU/TPU (CPU: a plain TF graph)
        (extra or "num_envs=8,epoch_length=8") + ",xla_convs_on_cpu=True")
    stack = model.history if spec is PONG else 1
    sim = SimulatedBatchEnv(model, store, int(hp.num_envs), 50, frame_stack=stack)
    agent = PPO(sim, hp, total_env_steps=1000)
    assert agent.jit
    iterations = tf.constant(1)
    hlo = agent._train.experimental_get_compiler_ir(iterations)(stage="hlo")
    assert hlo.count("ENTRY") == 1  # the whole call: one compiled module
    assert "while" in hlo  # the rollout and update loops stay inside it
    assert not HOST_OPS.search(hlo), HOST_OPS.search(hlo)
    captured = agent._train.get_concrete_function(iterations).captured_inputs
    handles = {id(c) for c in captured}
    window = store.sample(int(hp.num_envs), make_key(0))
    predict = tf.function(model.predict).get_concrete_function(
        window, tf.zeros([int(hp.num_envs)], tf.int32), make_key(1))
    used = {id(v.handle) for v in model.train_variables} & {id(c) for c in
                                                             predict.captured_inputs}
    assert len(used) >= 5 and used <= handles  # every weight imagining reads is an input
    assert id(store.frames.handle) in handles  # and the real start frames, on the device
    out = agent.train(1)  # and it runs
    assert np.isfinite(out["policy_loss"]).all()
