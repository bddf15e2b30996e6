"""Training loops: sequence the compiled pieces, checkpoint between them, log for humans.

``train_model_free`` runs PPO on a (real or native) env. Everything a run needs to resume is in
its ``output_dir``:

    config.json          env, hparams set, hparams values, seed (a rerun must match it)
    checkpoints/         tf.train.CheckpointManager: all agent, optimiser, env and RNG state
    metrics.jsonl        one JSON object per log point (env_steps, wall_time_s, return_mean, ...)
    events.out.tfevents TensorBoard summaries of the same metrics
    learning_curve.png   return against env steps
    eval.json            the final greedy evaluation

Rerunning the same command after a kill restores the newest checkpoint and continues; log lines
and the TensorBoard events written after that checkpoint are dropped first, so neither
``metrics.jsonl`` nor TensorBoard ever shows a step twice.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl import distribute, plots, registry, rundir
from imagined_rl.envs.core import BatchEnv, check_env, make_key, raw_reward, split
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams
from imagined_rl.ppo import PPO
from imagined_rl.summaries import Summaries, open_writer

EVAL_MAX_STEPS = 10_000  # evaluation's cap on an episode where the env has no time limit


def make_env(env_id: str, num_envs: int, seed: int = 0) -> BatchEnv:
    """A batch env for ``env_id``: a registered native env, any other gymnasium id (stepped on the
    host through the adapter), or ``module.path:Factory`` for your own ``BatchEnv``.

    A custom factory is called as ``Factory(num_envs=num_envs)`` and checked with
    :func:`check_env`, so a malformed env fails here with one line saying what is wrong.
    """
    if ":" in env_id:
        module_name, _, attr = env_id.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise UserError(f"cannot load custom env '{env_id}': {e}") from e
        try:
            env = factory(num_envs=num_envs)
        except Exception as e:
            raise UserError(f"custom env '{env_id}' failed to build: {e!r}") from e
        check_env(env)
        return env
    if env_id in registry.list_envs():
        return registry.env(env_id)(num_envs=num_envs)
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.NameNotFound:
        return registry.env(env_id)  # raises UnknownNameError with the close matches
    except gym.error.Error as e:  # a deprecated or missing version: gymnasium names the right one
        raise UserError(f"env '{env_id}': {e}") from None
    from imagined_rl.envs.gym_adapter import GymEnv

    try:
        return GymEnv(env_id, num_envs, seed=seed)
    except gym.error.DependencyNotInstalled as e:  # e.g. Box2D for LunarLander
        raise UserError(f"env '{env_id}' needs a package that is not installed: {e}") from None


def env_for(config: RunConfig, num_envs: int) -> BatchEnv:
    """The env a run trains on: its problem's env if it names one, else ``config.env``."""
    if config.problem:
        return registry.problem(config.problem).make_env(num_envs, seed=config.seed)
    return make_env(config.env, num_envs, seed=config.seed)


def reward_threshold(env_id: str) -> float | None:
    """gymnasium's ``reward_threshold`` for ``env_id`` (CartPole-v1: 475), if it has one."""
    import gymnasium as gym

    try:
        return gym.spec(env_id).reward_threshold
    except Exception:  # not a gymnasium id (custom env): no threshold
        return None


def evaluate(
    env: BatchEnv, policy: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], seed: int = 0,
    max_steps: int | None = None, *, with_finished: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Returns of the first episode of each of ``env.num_envs`` envs under ``policy(obs, key)``.

    Runs until every env has finished one episode (or ``max_steps``, default the env's time
    limit, or 10k). Each env counts only its first episode; later auto-reset episodes are ignored.
    ``with_finished`` also returns which episodes ended within the cap (the others' returns are
    those of the cap's steps only: a policy that never reaches the goal, say).
    """
    limit = max_steps or env.max_episode_steps or EVAL_MAX_STEPS
    key = make_key(seed)
    reset_key, key = tf.unstack(split(key))
    state, obs = env.reset(reset_key)
    returns = np.zeros(env.num_envs)
    active = np.ones(env.num_envs, bool)
    step_fn = tf.function(env.step, jit_compile=env.jit_compatible)
    for _ in range(limit):
        act_key, step_key, key = tf.unstack(split(key, 3))
        state, step = step_fn(state, policy(obs, act_key), step_key)
        returns += np.where(active, raw_reward(state, step).numpy(), 0.0)  # game score
        active &= ~(step.terminated.numpy() | step.truncated.numpy())
        obs = step.obs
        if not active.any():
            break
    return (returns, ~active) if with_finished else returns


@dataclasses.dataclass
class RunConfig:
    """What identifies a run; stored as ``config.json`` and checked when resuming."""

    env: str
    hparams_set: str
    hparams: dict[str, Any]
    seed: int
    problem: str | None = None

    def __post_init__(self) -> None:
        self.hparams = json.loads(json.dumps(self.hparams))  # tuples -> lists, as on disk

    @classmethod
    def load(cls, output_dir: str) -> RunConfig:
        raw = rundir.load_config(output_dir, "PPO run")
        if "model" in raw:
            raise UserError(f"'{output_dir}' holds a world-model run, not a PPO run; use "
                            "imagined-rl evaluate_model on it")
        return cls(**raw)

    def claim(self, output_dir: str) -> None:
        rundir.claim(output_dir, dataclasses.asdict(self), "a PPO run")

    def make_hparams(self) -> HParams:
        hp = registry.hparams(self.hparams_set)
        hp.override_from_dict(self.hparams)
        return hp


def build_agent(config: RunConfig, strategy: tf.distribute.Strategy | None = None,
                log: Callable[[str], None] = print) -> tuple[PPO, HParams]:
    """The PPO agent (and its env) that ``config`` describes, freshly initialised (data
    parallel over ``strategy``'s replicas when given and the env runs in the graph)."""
    hp = config.make_hparams()
    env = env_for(config, int(hp.num_envs) * int(hp.num_seeds))
    if strategy is not None and strategy.num_replicas_in_sync > 1 and not env.jit_compatible:
        log(f"{config.env} steps on the host and cannot be split over "
            f"{strategy.num_replicas_in_sync} replicas: training on one device")
        strategy = None
    return PPO(env, hp, total_env_steps=int(hp.train_steps), seed=config.seed,
               strategy=strategy), hp


def train_model_free(
    config: RunConfig, output_dir: str, save_checkpoints_secs: float = 30.0,
    eval_episodes: int = 16, progress: bool = True, log: Callable[[str], None] = print,
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, Any]:
    """Trains PPO until ``hparams.train_steps`` env steps per agent, resuming if possible
    (under ``strategy``: data parallel, see ``ppo.PPO``).

    Returns the final evaluation ``{"mean_return", "std_return", "episodes", ...}``.
    """
    if rundir.read_config(output_dir) is not None:
        RunConfig.load(output_dir)  # a world-model run here is refused by name
    rundir.check(output_dir, dataclasses.asdict(config), "a PPO run")
    agent, hp = build_agent(config, strategy, log)  # bad env/hparams: fails before the claim
    config.claim(output_dir)
    ckpt = tf.train.Checkpoint(state=agent.variables())
    manager = tf.train.CheckpointManager(ckpt, os.path.join(output_dir, "checkpoints"), 3)
    metrics_path = os.path.join(output_dir, "metrics.jsonl")
    latest = distribute.common_checkpoint(strategy, manager)
    if latest:
        ckpt.restore(latest).assert_consumed()
        if not agent.env.jit_compatible:
            agent.restart_envs()  # host envs cannot be rewound: start fresh episodes instead
        log(f"resuming {output_dir} from env step {agent.env_steps}")
    # drop log lines newer than the checkpoint (all of them on a fresh start)
    history = rundir.keep_jsonl(metrics_path, lambda m: bool(latest) and (
        m["env_steps"] <= agent.env_steps))
    wall0 = history[-1]["wall_time_s"] if history else 0.0

    total = int(hp.train_steps)
    summaries = Summaries(open_writer(output_dir, agent.env_steps))  # 0: a fresh start
    bar = tqdm.tqdm(total=total, initial=min(agent.env_steps, total), unit="step",
                    unit_scale=True, disable=not progress, dynamic_ncols=True, desc="ppo")
    start = last_save = t_prev = time.perf_counter()
    per_call = int(hp.iterations_per_call)
    try:
        with open(metrics_path, "a") as mfile:
            while agent.iteration < agent.num_iterations:
                k = min(per_call, agent.num_iterations - agent.iteration)
                before = agent.env_steps
                out = agent.train(k)
                _check_finite(out, agent.env_steps)
                now = time.perf_counter()
                record = _log_record(out, agent.env_steps, wall0 + now - start)
                record["env_steps_per_s"] = round(
                    (agent.env_steps - before) * agent.num_seeds / (now - t_prev), 1)
                t_prev = now
                mfile.write(json.dumps(record) + "\n")
                mfile.flush()
                summaries.add(record)
                bar.set_postfix(return_mean=_fmt(record["return_mean"]), refresh=False)
                bar.update(min(agent.env_steps, total) - min(before, total))  # redraws <= 10/s
                if distribute.agree(strategy, time.perf_counter() - last_save >=
                                    save_checkpoints_secs):
                    summaries.flush()  # TensorBoard holds what the checkpoint covers
                    manager.save(checkpoint_number=agent.iteration)
                    last_save = time.perf_counter()
    finally:
        summaries.flush()  # on an error too: TensorBoard gets what metrics.jsonl got
    bar.close()
    manager.save(checkpoint_number=agent.iteration)
    plot_learning_curve(metrics_path, os.path.join(output_dir, "learning_curve.png"),
                        title=f"PPO on {config.env} ({config.hparams_set}, seed {config.seed})")
    result = evaluate_agent(agent, config, eval_episodes)
    rundir.atomic_write(os.path.join(output_dir, "eval.json"), json.dumps(result))
    threshold = reward_threshold(config.env)
    verdict = ""
    if threshold is not None:
        verdict = (f" — solved (threshold {threshold:g})" if result["mean_return"] >= threshold
                   else f" — below the solved threshold {threshold:g}")
    log(f"{config.env}: greedy mean return {result['mean_return']:.1f} ± "
        f"{result['std_return']:.1f} over {result['episodes']} episodes after "
        f"{agent.env_steps} env steps{verdict}{unfinished_note(result)}")
    return result


def evaluate_agent(agent: PPO, config: RunConfig, episodes: int, greedy: bool = True,
                   seed: int = 12345) -> dict[str, Any]:
    """Greedy (or sampled) returns of ``episodes`` fresh episodes of agent 0 on the real env."""
    env = env_for(config, episodes)
    returns, finished = evaluate(env, lambda obs, key: agent.act(obs, key, greedy=greedy),
                                 seed=seed, with_finished=True)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "episodes": int(episodes), "env_steps": agent.env_steps, "greedy": greedy,
            "unfinished": int(np.sum(~finished)),
            "max_steps": int(env.max_episode_steps or EVAL_MAX_STEPS)}


def unfinished_note(result: dict[str, Any]) -> str:
    """A clause saying how many evaluation episodes never ended (empty if all did)."""
    if not result.get("unfinished"):
        return ""
    return (f" ({result['unfinished']} of {result['episodes']} episodes never ended: cut at "
            f"{result['max_steps']:,} steps, their returns are of those steps only)")


def restore_agent(output_dir: str) -> tuple[PPO, RunConfig]:
    """The trained agent of ``output_dir`` at its newest checkpoint."""
    config = RunConfig.load(output_dir)
    agent, _ = build_agent(config)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(state=agent.variables()), os.path.join(output_dir, "checkpoints"), 3)
    if not manager.latest_checkpoint:
        raise UserError(f"no checkpoint in '{output_dir}/checkpoints'; train first")
    manager.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    return agent, config


def _log_record(out: dict[str, np.ndarray], env_steps: int, wall: float) -> dict[str, Any]:
    """One metrics.jsonl line from a train call's ``[K, S]`` arrays (last iteration, all agents)."""
    episodes = out["episodes"].sum(axis=0)  # per agent, over the call's iterations
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = out["return_sum"].sum(axis=0) / episodes
        length = out["length_sum"].sum(axis=0) / episodes
    record: dict[str, Any] = {
        "env_steps": int(env_steps),
        "wall_time_s": round(float(wall), 3),
        "return_mean": _num(np.nanmean(ret) if np.isfinite(ret).any() else math.nan),
        "length_mean": _num(np.nanmean(length) if np.isfinite(length).any() else math.nan),
        "episodes": int(episodes.sum()),
    }
    if ret.size > 1:
        record["return_per_agent"] = [_num(r) for r in ret]
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                 "grad_norm"):
        record[name] = _num(out[name][-1].mean())
    return record


def _num(x: float) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else round(x, 6)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _check_finite(out: dict[str, np.ndarray], env_steps: int) -> None:
    for name in ("policy_loss", "value_loss", "grad_norm"):
        if not np.all(np.isfinite(out[name])):
            raise UserError(
                f"training diverged: non-finite {name} by env step {env_steps}; the last "
                "checkpoint is kept, lower learning_rate_constant or raise clip_grad_norm")


def plot_learning_curve(metrics_path: str, png_path: str, title: str = "") -> None:
    """Writes return-vs-env-steps from ``metrics.jsonl`` as a PNG."""
    rows = [r for r in rundir.read_jsonl(metrics_path) if r.get("return_mean") is not None]
    plots.curves(png_path, {"": ([r["env_steps"] for r in rows],
                                 [r["return_mean"] for r in rows])},
                 "env steps", "mean episode return", title)
