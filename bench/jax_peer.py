"""The JAX peer of ``ppo_vs_peers.py``: rejax's PPO on gymnax CartPole-v1, run in the JAX venv.

    bench/make_jax_venv.sh                     # once: rejax 0.1.3, gymnax 0.0.9, jax (CPU)
    $(bench/make_jax_venv.sh)/bin/python bench/jax_peer.py --steps=500000 --seeds=3

``ppo_vs_peers.py`` runs this itself (JAX and TensorFlow do not share a venv) and reads the one
JSON line it prints last. Same config as ours (PureJaxRL's CartPole: 4 envs x 128 steps, 4
epochs x 4 minibatches, lr 2.5e-4 annealed linearly to 0, gamma 0.99, lambda 0.95, clip 0.2,
entropy 0.01, value 0.5, grad-norm 0.5, 2x64 tanh actor and critic), timed the same way: the
run is cut into calls of 16 PPO iterations (8,192 env steps), each one jitted call, so compile
is the first call minus the median later one, steady throughput is the median call, and "time
to 475" is the wall time (compile included) at the end of the first call whose finished
training episodes average >= 475. rejax's own iteration does not report training returns; the
instrumented iteration below is its ``train_iteration`` (collect, GAE, epochs of minibatch
updates) plus a scan that sums the returns of the episodes finished in the rollout. Known
differences, rejax's design: separate Adam optimisers (and grad-norm clipping) for actor and
critic, no value clipping. ``--agents`` also times that many seeds vmapped into one call.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rejax import PPO
from rejax.algos.ppo import AdvantageMinibatch

ITERATIONS_PER_CALL = 16
NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 4, 128, 4, 4
THRESHOLD = 475.0


def make_algo(total_steps: int, hidden: int = 64) -> PPO:
    updates = total_steps // (NUM_ENVS * NUM_STEPS) * EPOCHS * MINIBATCHES
    algo = PPO.create(
        env="CartPole-v1", num_envs=NUM_ENVS, num_steps=NUM_STEPS, num_epochs=EPOCHS,
        num_minibatches=MINIBATCHES, learning_rate=optax.linear_schedule(2.5e-4, 0.0, updates),
        gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, total_timesteps=total_steps,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (hidden, hidden)},
    )
    return algo.replace(eval_callback=lambda algo, ts, rng: ())  # no evaluation in the timing


def make_call(algo: PPO):
    """One jitted call: ITERATIONS_PER_CALL PPO iterations; returns the state, the summed
    returns and the count of the training episodes that finished in it, and the open returns."""

    def iteration(carry, _):
        ts, open_return = carry
        ts, traj = algo.collect_trajectories(ts)
        last_val = algo.critic.apply(ts.critic_ts.params, ts.last_obs)
        last_val = jnp.where(ts.last_done, 0, last_val)
        advantages, targets = algo.calculate_gae(traj, last_val)

        def epoch(ts, _):
            rng, mb_rng = jax.random.split(ts.rng)
            ts = ts.replace(rng=rng)
            batch = AdvantageMinibatch(traj, advantages, targets)
            minibatches = algo.shuffle_and_split(batch, mb_rng)
            ts, _ = jax.lax.scan(lambda ts, mb: (algo.update(ts, mb), None), ts, minibatches)
            return ts, None

        ts, _ = jax.lax.scan(epoch, ts, None, EPOCHS)

        def episodes(ret, step):
            reward, done = step
            ret = ret + reward
            return jnp.where(done, 0.0, ret), (jnp.where(done, ret, 0.0).sum(), done.sum())

        open_return, (sums, counts) = jax.lax.scan(episodes, open_return, (traj.reward, traj.done))
        return (ts, open_return), (sums.sum(), counts.sum())

    def call(ts, open_return):
        (ts, open_return), (sums, counts) = jax.lax.scan(
            iteration, (ts, open_return), None, ITERATIONS_PER_CALL)
        return ts, open_return, sums.sum(), counts.sum()

    return call


def greedy_return(algo: PPO, ts, episodes: int = 32, seed: int = 12345) -> float:
    from rejax.evaluate import evaluate

    act = algo.make_act(ts)
    _, returns = evaluate(act, jax.random.PRNGKey(seed), algo.env, algo.env_params,
                                episodes, algo.env_params.max_steps_in_episode)
    return float(np.mean(returns))


def run_seed(seed: int, steps: int, hidden: int = 64) -> dict:
    calls = max(2, -(-steps // (ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS)))
    total = calls * ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS
    t0 = time.perf_counter()
    algo = make_algo(total, hidden)
    call = jax.jit(make_call(algo))
    ts = algo.init_state(jax.random.PRNGKey(seed))
    open_return = jnp.zeros(NUM_ENVS)
    records = []
    for i in range(calls):
        start = time.perf_counter()
        ts, open_return, ret_sum, count = call(ts, open_return)
        ret_sum, count = float(ret_sum), int(count)  # blocks: the call is done
        end = time.perf_counter()
        records.append({"call_s": end - start, "wall_s": end - t0,
                        "env_steps": (i + 1) * ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS,
                        "return_mean": ret_sum / count if count else None})
    median = float(np.median([r["call_s"] for r in records[1:]]))
    hit = next((r for r in records if (r["return_mean"] or 0.0) >= THRESHOLD), None)
    return {
        "framework": f"rejax {_version('rejax')} (jax {jax.__version__})", "seed": seed,
        "env_steps": total, "compile_s": records[0]["call_s"] - median,
        "steps_per_s": ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS / median,
        "train_wall_s": records[-1]["wall_s"],
        "time_to_475_s": hit and hit["wall_s"], "steps_to_475": hit and hit["env_steps"],
        "greedy_mean": greedy_return(algo, ts), "greedy_std": None,
        "curve": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                  for r in records],
    }


def run_vmapped(agents: int, steps: int, hidden: int = 64) -> dict:
    """``agents`` seeds vmapped into one jitted call: total env steps/s, compile."""
    calls = max(2, -(-steps // (ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS)))
    total = calls * ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS
    algo = make_algo(total, hidden)
    call = jax.jit(jax.vmap(make_call(algo)))
    ts = jax.vmap(algo.init_state)(jax.random.split(jax.random.PRNGKey(0), agents))
    open_return = jnp.zeros((agents, NUM_ENVS))
    times, finals = [], None
    for _ in range(calls):
        start = time.perf_counter()
        ts, open_return, ret_sum, count = call(ts, open_return)
        finals = np.asarray(ret_sum) / np.maximum(np.asarray(count), 1)
        times.append(time.perf_counter() - start)
    median = float(np.median(times[1:]))
    return {"agents": agents, "env_steps_per_agent": total, "compile_s": times[0] - median,
            "total_steps_per_s": agents * ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS / median,
            "final_train_return_per_agent": finals.tolist(), "call_s": times}


def _version(pkg: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(pkg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--agents", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--hidden", type=int, default=64,
                        help="width of the two tanh layers of actor and critic")
    parser.add_argument("--agent_steps", type=int, default=None,
                        help="env steps per agent of the vmapped runs (default --steps)")
    args = parser.parse_args()
    # JAX's one-time start-up (backend, rejax/gymnax set-up: ~4.5 s here) before any clock
    # starts, as TensorFlow's is on our side; without it seed 0's time to 475 carried it
    warm = make_algo(ITERATIONS_PER_CALL * NUM_ENVS * NUM_STEPS, args.hidden)
    jax.block_until_ready(warm.init_state(jax.random.PRNGKey(0)))
    out = {"jax": jax.__version__, "rejax": _version("rejax"), "gymnax": _version("gymnax"),
           "single": [run_seed(s, args.steps, args.hidden) for s in range(args.seeds)],
           "vmapped": [run_vmapped(a, args.agent_steps or args.steps, args.hidden)
                       for a in args.agents]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
