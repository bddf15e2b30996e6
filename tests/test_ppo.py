"""PPO's pure pieces against small NumPy references, then the agent end to end (rlax-style).

The references below are written the slow, obvious way (explicit loops, float64) so that they are
easy to check by eye; the in-graph functions must agree with them to float32 precision. The agent
tests use tiny hparams so that each XLA compile of the training graph stays a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from imagined_rl import registry
from imagined_rl.envs.classic import CartPole, Pendulum
from imagined_rl.envs.core import make_key
from imagined_rl.hparams_lib import HParamsError
from imagined_rl.ppo import (
    METRICS,
    PPO,
    UPDATE_METRICS,
    adam,
    categorical_entropy,
    categorical_log_prob,
    categorical_sample,
    clip_by_agent_norm,
    episode_stats,
    gae,
    gaussian_entropy,
    gaussian_log_prob,
    ppo_loss,
)

TOL = {"rtol": 1e-5, "atol": 1e-6}
TINY = "num_envs=2,epoch_length=16,num_minibatches=2,optimization_epochs=1,iterations_per_call=2"
SMALL_NETS = "policy_layers=[16],value_layers=[16]"  # fewer ops: a faster XLA compile


def flat_params(agent: PPO) -> list[np.ndarray]:
    return [p.numpy() for p in tf.nest.flatten(agent.params)]


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------


def gae_reference(rewards, values, last_value, terminated, truncated, final_values, gamma, lam):
    """Truncation-aware GAE, one time step at a time, in float64."""
    t_len = rewards.shape[0]
    adv = np.zeros(values.shape, np.float64)
    next_adv = np.zeros(last_value.shape, np.float64)
    for t in reversed(range(t_len)):
        bootstrap = last_value if t == t_len - 1 else values[t + 1]
        next_value = np.where(truncated[t], final_values[t], bootstrap)
        next_value = np.where(terminated[t], 0.0, next_value)
        delta = rewards[t] + gamma * next_value - values[t]
        not_done = 1.0 - (terminated[t] | truncated[t])
        next_adv = delta + gamma * lam * not_done * next_adv
        adv[t] = next_adv
    return adv, adv + values


def random_gae_inputs(t_len: int = 17, n: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
    terminated = rng.random((t_len, n)) < 0.15
    truncated = (rng.random((t_len, n)) < 0.15) & ~terminated
    assert terminated.sum() >= 3 and truncated.sum() >= 3  # both branches are exercised
    return {
        "rewards": f32(t_len, n),
        "values": f32(t_len, n),
        "last_value": f32(n),
        "terminated": terminated,
        "truncated": truncated,
        "final_values": 10.0 * f32(t_len, n),  # large, so a wrong bootstrap shows clearly
    }


def test_gae_matches_numpy_reference():
    x = random_gae_inputs()
    adv, target = gae(**{k: tf.constant(v) for k, v in x.items()}, gamma=0.99, lam=0.95)
    ref_adv, ref_target = gae_reference(**x, gamma=0.99, lam=0.95)
    assert adv.shape == (17, 5) and adv.dtype == tf.float32
    np.testing.assert_allclose(adv.numpy(), ref_adv, **TOL)
    np.testing.assert_allclose(target.numpy(), ref_target, **TOL)


def test_gae_hand_computed_truncation_bootstraps_termination_does_not():
    # gamma = lam = 0.5. Column 0 is truncated at t=1, column 1 terminated at t=1.
    rewards = np.ones((3, 2), np.float32)
    values = np.array([[1, 1], [2, 2], [3, 3]], np.float32)
    last_value = np.array([4, 4], np.float32)
    final_values = np.array([[10, 10], [20, 20], [30, 30]], np.float32)
    terminated = np.array([[0, 0], [0, 1], [0, 0]], bool)
    truncated = np.array([[0, 0], [1, 0], [0, 0]], bool)
    # t=2: delta = 1 + 0.5*4 - 3 = 0                        -> A = 0 (both columns)
    # t=1: truncated:  delta = 1 + 0.5*20 - 2 = 9, recursion cut -> A = 9
    #      terminated: delta = 1 + 0 - 2 = -1, recursion cut      -> A = -1
    # t=0: delta = 1 + 0.5*2 - 1 = 1                        -> A = 1 + 0.25 * A_1
    want_adv = np.array([[3.25, 0.75], [9.0, -1.0], [0.0, 0.0]])
    adv, target = gae(tf.constant(rewards), tf.constant(values), tf.constant(last_value),
                      tf.constant(terminated), tf.constant(truncated), tf.constant(final_values),
                      gamma=0.5, lam=0.5)
    np.testing.assert_allclose(adv.numpy(), want_adv, **TOL)
    np.testing.assert_allclose(target.numpy(), want_adv + values, **TOL)


def test_episode_stats_match_a_running_tally():
    """The batched after-the-loop form equals the per-step tally it replaced."""
    rng = np.random.default_rng(7)
    t_len, s, n = 20, 2, 3
    reward = rng.integers(-1, 3, size=(t_len, s, n)).astype(np.float32)
    done = rng.random((t_len, s, n)) < 0.2
    done[:, 1, 2] = False  # an env whose episode stays open all rollout
    ret0 = rng.integers(0, 5, size=(s, n)).astype(np.float32)
    len0 = rng.integers(0, 9, size=(s, n)).astype(np.int32)
    ret, length = ret0.copy(), len0.copy()
    want = {"return_sum": np.zeros(s), "episodes": np.zeros(s), "length_sum": np.zeros(s)}
    for t in range(t_len):
        ret, length = ret + reward[t], length + 1
        want["return_sum"] += (ret * done[t]).sum(axis=1)
        want["length_sum"] += (length * done[t]).sum(axis=1)
        want["episodes"] += done[t].sum(axis=1)
        ret, length = np.where(done[t], 0.0, ret), np.where(done[t], 0, length)
    stats, ret_open, len_open = episode_stats(tf.constant(reward), tf.constant(done),
                                              tf.constant(ret0), tf.constant(len0))
    for k, v in want.items():
        np.testing.assert_allclose(stats[k].numpy(), v, **TOL)
    np.testing.assert_allclose(ret_open.numpy(), ret)
    np.testing.assert_array_equal(len_open.numpy(), length)
    assert want["episodes"].min() > 0 and ret[1, 2] == ret0[1, 2] + reward[:, 1, 2].sum()


def test_gae_under_xla():
    x = {k: tf.constant(v) for k, v in random_gae_inputs(seed=1).items()}
    jitted = tf.function(lambda **kw: gae(**kw, gamma=0.9, lam=0.8), jit_compile=True)
    adv, target = jitted(**x)
    ref_adv, ref_target = gae_reference(**{k: v.numpy() for k, v in x.items()}, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv.numpy(), ref_adv, **TOL)
    np.testing.assert_allclose(target.numpy(), ref_target, **TOL)


# --------------------------------------------------------------------------------------------
# PPO loss
# --------------------------------------------------------------------------------------------


def ppo_loss_reference(log_prob, old_log_prob, advantages, value, old_value, returns, entropy,
                       clip, value_coef, entropy_coef, clip_value, normalize_advantages):
    """The clipped-surrogate PPO loss per agent (rows), in float64."""
    adv = advantages.astype(np.float64)
    if normalize_advantages:  # population std (ddof=0), epsilon added to the std
        adv = (adv - adv.mean(-1, keepdims=True)) / (adv.std(-1, keepdims=True) + 1e-8)
    log_ratio = log_prob.astype(np.float64) - old_log_prob
    ratio = np.exp(log_ratio)
    surrogate = np.minimum(ratio * adv, np.clip(ratio, 1 - clip, 1 + clip) * adv)
    policy_loss = -surrogate.mean(-1)
    value_err = (value - returns.astype(np.float64)) ** 2
    if clip_value:
        clipped = old_value + np.clip(value - old_value.astype(np.float64), -clip, clip)
        value_err = np.maximum(value_err, (clipped - returns) ** 2)
    value_loss = 0.5 * value_err.mean(-1)
    ent = entropy.astype(np.float64).mean(-1)
    stats = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": ent,
        "approx_kl": ((ratio - 1) - log_ratio).mean(-1),
        "clip_fraction": (np.abs(ratio - 1) > clip).mean(-1),
    }
    return policy_loss + value_coef * value_loss - entropy_coef * ent, stats


@pytest.mark.parametrize("clip_value", [True, False])
@pytest.mark.parametrize("normalize_advantages", [True, False])
def test_ppo_loss_matches_numpy_reference(clip_value, normalize_advantages):
    rng = np.random.default_rng(2)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
    s, b = 2, 32
    old_log_prob = f32(s, b) - 1.0
    old_value = f32(s, b)
    x = {
        "log_prob": old_log_prob + 0.3 * f32(s, b),  # ratios well outside [0.8, 1.2] too
        "old_log_prob": old_log_prob,
        "advantages": 3.0 * f32(s, b) + 1.0,  # not already normalised
        "value": old_value + 0.5 * f32(s, b),  # value clipping (at +-0.2) matters
        "old_value": old_value,
        "returns": old_value + f32(s, b),
        "entropy": np.abs(f32(s, b)),
    }
    coefs = {"clip": 0.2, "value_coef": 0.5, "entropy_coef": 0.01}
    total, stats = ppo_loss(**{k: tf.constant(v) for k, v in x.items()}, **coefs,
                            clip_value=clip_value, normalize_advantages=normalize_advantages)
    ref_total, ref_stats = ppo_loss_reference(
        x["log_prob"], x["old_log_prob"], x["advantages"], x["value"], x["old_value"],
        x["returns"], x["entropy"], 0.2, 0.5, 0.01, clip_value, normalize_advantages)
    assert 0.1 < ref_stats["clip_fraction"].min() and ref_stats["clip_fraction"].max() < 0.9
    assert set(stats) == set(ref_stats)
    for name, want in ref_stats.items():
        assert stats[name].shape == (s,), name
        np.testing.assert_allclose(stats[name].numpy(), want, **TOL, err_msg=name)
    assert total.shape == (s,)
    np.testing.assert_allclose(total.numpy(), ref_total, **TOL)


def test_ppo_loss_value_clipping_changes_the_value_loss():
    # One sample: V moved from 0 to 1 towards a return of 1; clipped V is 0.2, so max() picks it.
    one = lambda v: tf.constant([[v]], tf.float32)
    args = (one(0.0), one(0.0), one(1.0), one(1.0), one(0.0), one(1.0), one(0.0), 0.2, 1.0, 0.0)
    _, clipped = ppo_loss(*args, clip_value=True, normalize_advantages=False)
    _, unclipped = ppo_loss(*args, clip_value=False, normalize_advantages=False)
    np.testing.assert_allclose(clipped["value_loss"].numpy(), [0.5 * 0.8**2], **TOL)
    np.testing.assert_allclose(unclipped["value_loss"].numpy(), [0.0], **TOL)


# --------------------------------------------------------------------------------------------
# Gradient clipping and Adam
# --------------------------------------------------------------------------------------------


def test_clip_by_agent_norm_clips_each_agent_separately():
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=shape).astype(np.float32) for shape in ((2, 3, 4), (2, 5))]
    grads[0][0] *= 100.0  # agent 0: huge gradients
    grads[1][0] *= 100.0
    grads[0][1] *= 0.01  # agent 1: norm well below max_norm
    grads[1][1] *= 0.01
    want_norm = np.sqrt([sum(np.sum(g[s].astype(np.float64) ** 2) for g in grads) for s in (0, 1)])
    assert want_norm[0] > 10.0 and want_norm[1] < 0.5
    clipped, norm = clip_by_agent_norm([tf.constant(g) for g in grads], max_norm=0.5)
    np.testing.assert_allclose(norm.numpy(), want_norm, **TOL)
    for g, c in zip(grads, clipped, strict=True):
        np.testing.assert_allclose(c.numpy()[0], g[0] * 0.5 / want_norm[0], **TOL)
        np.testing.assert_array_equal(c.numpy()[1], g[1])  # untouched, bit for bit
    new_norm0 = math.sqrt(sum(float(np.sum(c.numpy()[0].astype(np.float64) ** 2)) for c in clipped))
    assert new_norm0 == pytest.approx(0.5, rel=1e-5)


def test_adam_matches_numpy_reference():
    rng = np.random.default_rng(4)
    params = [rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)]
    # The second tensor's gradients are ~1e-5, comparable to eps: eps placement matters there.
    grads = [[rng.normal(size=p.shape).astype(np.float32) * scale
              for p, scale in zip(params, (1.0, 1e-5), strict=True)] for _ in range(3)]
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-5

    ref = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in ref]
    v = [np.zeros_like(p) for p in ref]
    tf_p = [tf.constant(p) for p in params]
    tf_m = tf.zeros([2, 4])  # the moments flat per agent: sizes 3 and 1
    tf_v = tf.zeros([2, 4])
    for step, g in enumerate(grads, start=1):
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi.astype(np.float64) ** 2
            m_hat, v_hat = m[i] / (1 - b1**step), v[i] / (1 - b2**step)
            ref[i] = ref[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        tf_p, tf_m, tf_v = adam(tf_p, [tf.constant(gi) for gi in g], tf_m, tf_v,
                                tf.constant(step, tf.int64), lr)
        for got, want in zip(tf_p, ref, strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    # The small-gradient tensor moved by a visible, eps-dependent amount.
    assert 1e-4 < np.max(np.abs(ref[1] - params[1])) < 3 * lr


# --------------------------------------------------------------------------------------------
# Policy distributions
# --------------------------------------------------------------------------------------------


def test_categorical_log_prob_and_entropy():
    rng = np.random.default_rng(5)
    logits = (2.0 * rng.normal(size=(2, 5, 3))).astype(np.float32)
    action = rng.integers(0, 3, size=(2, 5)).astype(np.int32)
    z = logits.astype(np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    want_lp = np.take_along_axis(log_p, action[..., None], axis=-1)[..., 0]
    want_ent = -(np.exp(log_p) * log_p).sum(-1)
    np.testing.assert_allclose(
        categorical_log_prob(tf.constant(logits), tf.constant(action)).numpy(), want_lp, **TOL)
    np.testing.assert_allclose(categorical_entropy(tf.constant(logits)).numpy(), want_ent, **TOL)


def test_categorical_sample_frequencies():
    logits = tf.math.log(tf.constant([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    a = categorical_sample(tf.tile(logits[:, None, :], [1, 20_000, 1]), make_key(7))
    assert a.dtype == tf.int32 and a.shape == (2, 20_000)
    freq = np.stack([np.bincount(row, minlength=3) / row.size for row in a.numpy()])
    np.testing.assert_allclose(freq, np.exp(logits.numpy()), atol=0.015)


def test_gaussian_log_prob_and_entropy():
    rng = np.random.default_rng(6)
    mean = rng.normal(size=(2, 5, 3)).astype(np.float32)
    log_std = (0.5 * rng.normal(size=(2, 1, 3))).astype(np.float32)  # broadcast over batch
    action = rng.normal(size=(2, 5, 3)).astype(np.float32)
    std = np.exp(log_std.astype(np.float64))
    want_lp = np.sum(-0.5 * ((action - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi),
                     axis=-1)
    want_ent = np.sum(0.5 * np.log(2 * np.pi * np.e * std**2), axis=-1)
    got_lp = gaussian_log_prob(tf.constant(mean), tf.constant(log_std), tf.constant(action))
    np.testing.assert_allclose(got_lp.numpy(), want_lp, **TOL)
    np.testing.assert_allclose(gaussian_entropy(tf.constant(log_std)).numpy(), want_ent, **TOL)


# --------------------------------------------------------------------------------------------
# The agent on the native CartPole
# --------------------------------------------------------------------------------------------


def cartpole_hp(extra: str = ""):
    return registry.hparams("ppo_cartpole").parse(TINY).parse(extra)


def cartpole_agent(seed: int = 0, extra: str = "", num_seeds: int = 1) -> PPO:
    hp = cartpole_hp(f"num_seeds={num_seeds}," + extra)
    return PPO(CartPole(num_envs=2 * num_seeds), hp, total_env_steps=10_000, seed=seed)


def state_values(agent: PPO) -> list[np.ndarray]:
    """Every training-state variable (params, Adam moments, env state, RNG key, counters)."""
    return [v.numpy() for v in agent.variables()]


def train_from(agent: PPO, state: list[np.ndarray]) -> list[np.ndarray]:
    """Loads ``state`` into ``agent``, runs one train() call with its already compiled graph."""
    for var, value in zip(agent.variables(), state, strict=True):
        var.assign(value)
    agent.train()
    return state_values(agent)


@pytest.fixture(scope="module")
def trained():
    """A seed-0 agent, its full initial state, and the metrics of one train() call."""
    agent = cartpole_agent(seed=0)
    initial = state_values(agent)
    metrics = agent.train()
    return agent, initial, metrics


def test_train_returns_per_iteration_metrics(trained):
    agent, _, m = trained
    before = [v.numpy() for v in tf.nest.flatten(cartpole_agent(seed=0).params)]
    assert set(METRICS) | {"return_mean", "length_mean"} <= set(m)
    for name in METRICS:
        assert m[name].shape == (2, 1), name
        assert np.all(np.isfinite(m[name])), name
    assert agent.iteration == 2 and agent.env_steps == 64
    # CartPole pays +1 per step, so finished episodes' returns equal their lengths.
    np.testing.assert_array_equal(m["return_sum"], m["length_sum"])
    assert m["episodes"].sum() >= 1  # random play ends some episode within 32 steps
    # Near-uniform initial policy over 2 actions (last layer gain 0.01).
    np.testing.assert_allclose(m["entropy"], math.log(2.0), atol=1e-3)
    assert np.all(m["grad_norm"] > 0) and np.all(m["value_loss"] > 0)
    assert np.all(m["approx_kl"] >= 0)
    assert np.all((m["clip_fraction"] >= 0) & (m["clip_fraction"] <= 1))
    assert max_abs_diff(before, flat_params(agent)) > 1e-5  # training moved the parameters


def test_same_seed_is_deterministic_and_seeds_differ(trained):
    # Each agent compiles its own graph (seconds each), so the seed-0 agent's compiled train()
    # replays both runs: a same-seed agent's whole initial state must be identical, bit for bit,
    # and train() a deterministic function of that state.
    agent, initial0, _ = trained
    params = lambda state: tf.nest.flatten(tf.nest.pack_sequence_as(agent.state, state)["params"])
    final0 = state_values(agent)
    for a, b in zip(initial0, state_values(cartpole_agent(seed=0)), strict=True):
        np.testing.assert_array_equal(a, b)

    initial1 = state_values(cartpole_agent(seed=1))
    assert max_abs_diff(params(initial0), params(initial1)) > 1e-2
    final1 = train_from(agent, initial1)
    assert max_abs_diff(params(final0), params(final1)) > 1e-2

    replay0 = train_from(agent, initial0)  # also leaves the fixture as it was
    for a, b in zip(final0, replay0, strict=True):
        np.testing.assert_array_equal(a, b)


def test_num_seeds_trains_independent_agents():
    # jit=false keeps this test fast; the fixture's agent covers the XLA-compiled train().
    agent = cartpole_agent(seed=0, extra=f"jit=false,{SMALL_NETS}", num_seeds=3)
    assert agent.env.num_envs == 6
    m = agent.train()
    for name in METRICS:
        assert m[name].shape == (2, 3), name
    assert agent.env_steps == 64  # per agent
    for p in flat_params(agent):
        assert p.shape[0] == 3
    w = agent.params["pi"][0][0].numpy()  # first policy layer [S, in, out]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert np.max(np.abs(w[i] - w[j])) > 1e-2


SWEEP = {"learning_rate_constant": (1e-4, 3e-3), "entropy_loss_coef": (0.0, 0.05),
         "clipping_coef": (0.1, 0.3), "gae_gamma": (0.9, 0.99), "gae_lambda": (0.8, 0.95)}


def test_hparams_sweep_gives_each_agent_its_own_values():
    """A sweep trains agent i with the i-th value of each swept hparam, in one call: agent i
    ends where a run giving every agent those values leaves its agent i (same seeds), and a
    sweep of different values gives different agents."""
    sweep = ";".join(f"{k}={'|'.join(map(str, v))}" for k, v in SWEEP.items())
    swept = cartpole_agent(extra=f"jit=false,{SMALL_NETS},hparams_sweep={sweep}", num_seeds=2)
    swept.train()
    for i in range(2):
        values = ",".join(f"{k}={v[i]}" for k, v in SWEEP.items())
        alone = cartpole_agent(extra=f"jit=false,{SMALL_NETS},{values}", num_seeds=2)
        alone.train()
        for a, b in zip(flat_params(swept), flat_params(alone), strict=True):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-4, atol=1e-6)
        if i == 1:  # agent 0 of this run had agent 1's values, unlike the sweep's agent 0
            assert max(np.max(np.abs(a[0] - b[0])) for a, b in zip(
                flat_params(swept), flat_params(alone))) > 1e-4
    with pytest.raises(ValueError, match="3 values for num_seeds=2"):
        cartpole_agent(extra="hparams_sweep=gae_gamma=0.9|0.95|0.99", num_seeds=2)
    with pytest.raises(ValueError, match="cannot sweep num_envs"):
        cartpole_agent(extra="hparams_sweep=num_envs=2|4", num_seeds=2)


def test_act_greedy_is_argmax_of_policy_logits(trained):
    agent = trained[0]
    obs = np.random.default_rng(8).normal(scale=0.1, size=(7, 4)).astype(np.float32)
    a = agent.act(obs, greedy=True)
    assert a.dtype == tf.int32 and a.shape == (7,)
    params = tf.nest.map_structure(lambda p: p[:1], agent.params)
    logits = agent._policy(params, tf.constant(obs)[None])[0].numpy()
    np.testing.assert_array_equal(a.numpy(), logits.argmax(-1))
    sampled = agent.act(obs, key=make_key(3))
    assert sampled.dtype == tf.int32 and sampled.shape == (7,)
    assert set(sampled.numpy().tolist()) <= {0, 1}


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="num_envs"):
        PPO(CartPole(num_envs=3), cartpole_hp(), total_env_steps=10_000)
    with pytest.raises(ValueError, match="num_envs"):  # num_seeds=2 needs 4 envs
        PPO(CartPole(num_envs=2), cartpole_hp("num_seeds=2"), total_env_steps=10_000)
    with pytest.raises(ValueError, match="num_minibatches"):
        PPO(CartPole(num_envs=2), cartpole_hp("num_minibatches=3"), total_env_steps=10_000)


def test_update_is_the_same_with_and_without_xla():
    # The update given one fixed rollout batch: eager and XLA agree up to float reassociation.
    # (One minibatch per epoch, so the random shuffle does not change the gradient.)
    agent = cartpole_agent(
        seed=0, extra=f"jit=false,num_minibatches=1,optimization_epochs=2,{SMALL_NETS}")
    c = tf.nest.map_structure(lambda v: v.read_value(), agent.state)
    c, flat, lr, _ = agent._prepare(c, agent.env)
    eager, eager_stats = agent._update(c, flat, lr)
    xla, xla_stats = tf.function(agent._update, jit_compile=True)(c, flat, lr)
    diff = max_abs_diff([p.numpy() for p in tf.nest.flatten(eager["params"])],
                        [p.numpy() for p in tf.nest.flatten(xla["params"])])
    assert diff < 1e-5
    moved = max_abs_diff([p.numpy() for p in tf.nest.flatten(c["params"])],
                         [p.numpy() for p in tf.nest.flatten(eager["params"])])
    assert moved > 1e-4
    for name in eager_stats:
        np.testing.assert_allclose(eager_stats[name].numpy(), xla_stats[name].numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)


def test_learn_on_a_rollout_stepped_elsewhere_is_trains_update():
    """``PPO.learn`` (the agent learning from a rollout it did not step itself, as the SimPLe
    loop's agent does on the real env) makes the same Adam steps as ``train``'s update on the
    same rollout, and leaves the iteration count and ``train``'s envs alone. (One minibatch
    per epoch: the shuffle cannot change the gradient.)"""
    agent = cartpole_agent(
        seed=0, extra=f"jit=false,num_minibatches=1,optimization_epochs=2,{SMALL_NETS}")
    c = tf.nest.map_structure(lambda v: v.read_value(), agent.state)
    after, batch, _, _ = agent._rollout(c, agent.env)
    ref, flat, lr, _ = agent._prepare(c, agent.env)
    ref, _ = agent._update(ref, flat, lr)
    first = lambda z: z.numpy()[:, 0]  # [T, S=1, N, ...] -> [T, N, ...]
    rollout = {k: first(batch[k]) for k in ("obs", "action", "terminated", "truncated",
                                             "final_obs")}
    rollout.update(reward=first(batch["reward"]) / agent.hp.reward_scale,
                   last_obs=after["obs"].numpy())
    env_state = [v.numpy() for v in tf.nest.flatten(agent.state["env_state"])]
    stats = agent.learn(rollout, learning_rate=float(lr))
    for name in ("params", "m", "v"):
        diff = max_abs_diff([t.numpy() for t in tf.nest.flatten(ref[name])],
                            [t.numpy() for t in tf.nest.flatten(agent.state[name])])
        assert diff < 1e-5, name
    assert max_abs_diff([t.numpy() for t in tf.nest.flatten(c["params"])],
                        flat_params(agent)) > 1e-4
    assert int(agent.state["updates"].numpy()) == int(ref["updates"].numpy()) == 2
    assert agent.iteration == 0
    assert max_abs_diff(env_state, [v.numpy() for v in tf.nest.flatten(
        agent.state["env_state"])]) == 0
    assert set(stats) == set(UPDATE_METRICS) and stats["grad_norm"] > 0
    with pytest.raises(HParamsError, match="smaller than num_minibatches"):
        cartpole_agent(seed=0, extra="num_minibatches=4").learn(
            {k: v[:1, :1] for k, v in rollout.items()}, 1e-3)


# --------------------------------------------------------------------------------------------
# A Gaussian policy on Pendulum
# --------------------------------------------------------------------------------------------


def test_gaussian_policy_on_pendulum():
    hp = registry.hparams("ppo_pendulum").parse(TINY).parse(f"iterations_per_call=1,{SMALL_NETS}")
    agent = PPO(Pendulum(num_envs=2), hp, total_env_steps=10_000, seed=0)
    assert agent.params["log_std"].shape == (1, 1)
    m = agent.train()
    for name in METRICS:
        assert m[name].shape == (1, 1) and np.all(np.isfinite(m[name])), name
    assert agent.env_steps == 32
    # Entropy of N(., exp(0)^2) in 1-D, averaged over updates that barely moved log_std.
    np.testing.assert_allclose(m["entropy"], 0.5 * math.log(2 * math.pi * math.e), atol=1e-2)

    obs = np.random.default_rng(9).normal(size=(512, 3)).astype(np.float32)
    a = agent.act(obs, key=make_key(1)).numpy()
    assert a.shape == (512, 1) and a.dtype == np.float32
    assert a.min() >= -2.0 and a.max() <= 2.0
    assert np.sum(np.abs(a) == 2.0) >= 5  # std ~1 noise sends some past the bounds: clipped
    greedy = agent.act(obs[:8], greedy=True).numpy()
    params = tf.nest.map_structure(lambda p: p[:1], agent.params)
    mean = agent._policy(params, tf.constant(obs[:8])[None])[0].numpy()
    np.testing.assert_allclose(greedy, np.clip(mean, -2.0, 2.0), **TOL)
