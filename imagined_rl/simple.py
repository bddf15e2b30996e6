"""The SimPLe loop: collect real data -> train the world model -> train PPO in imagination ->
evaluate for real -> repeat (Kaiser et al. 2019, tensor2tensor's ``trainer_model_based``).

    imagined-rl train_model_based --problem=gym_cartpole_random --output_dir=runs/simple

Everything lives under ``output_dir``:

    data/            real experience, one collection epoch per loop epoch (random policy first,
                     then the current policy), via :func:`imagined_rl.data.record`
    world_model/     the world-model run (generic trainer); its step target grows each epoch
    policy/          the PPO agent's checkpoints; its iteration target grows each epoch
    simple.jsonl     one line per finished epoch: real return, real env steps so far (every
                     step the real env took, kept in the data or not), model dev loss,
                     imagined return

Every phase is idempotent and resumes where it stopped: recording skips complete shards, the
model and the policy restore their newest checkpoints and train only up to the epoch's target,
so rerunning the same command after a kill continues the loop.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl import data, loops, registry
from imagined_rl.envs.core import random_actions
from imagined_rl.envs.simulated import SimulatedBatchEnv, start_windows
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams
from imagined_rl.ppo import PPO
from imagined_rl.world_models import trainer as wm_trainer


def train_model_based(output_dir: str, loop_hp: HParams, seed: int = 0, progress: bool = True,
                      log=print) -> list[dict[str, Any]]:
    """Runs (or resumes) ``loop_hp.epochs`` SimPLe epochs; returns the per-epoch records."""
    problem = registry.problem(loop_hp.problem)
    os.makedirs(output_dir, exist_ok=True)
    _claim(output_dir, loop_hp, seed)
    data_dir = os.path.join(output_dir, "data")
    history_path = os.path.join(output_dir, "simple.jsonl")
    done = _read(history_path)
    agent: PPO | None = None
    for epoch in range(int(loop_hp.epochs)):
        if epoch < len(done) and agent is not None:
            continue
        # 1. real experience: random at first, then the policy being trained
        real_env = problem.make_env(problem.num_envs, seed=seed + epoch)
        if agent is None:
            policy = lambda obs, key, env=real_env: random_actions(env.action_spec, env.num_envs,
                                                                   key)
            policy_id = "random"
        else:
            policy = lambda obs, key, a=agent: a.act(obs, key)
            policy_id = f"policy@epoch{epoch}"
        steps = int(loop_hp.real_steps_first if epoch == 0 else loop_hp.real_steps_per_epoch)
        data.record(real_env, policy, steps, data_dir, seed, epoch=epoch, problem=problem.name,
                    steps_per_shard=max(1000, steps // 4), progress=progress,
                    policy_id=policy_id,
                    finish_episodes=bool(loop_hp.get("collect_finish_episodes", False)))
        _close(real_env)
        # 2. the world model, on every epoch's data so far
        model_run = os.path.join(output_dir, "world_model")
        model_hp = registry.hparams(loop_hp.model_hparams_set)
        config = wm_trainer.ModelRunConfig(loop_hp.model, loop_hp.model_hparams_set,
                                           model_hp.values(), os.path.abspath(data_dir), seed)
        target = (epoch + 1) * int(loop_hp.model_train_steps)
        trainer = wm_trainer.train_world_model(config, model_run, train_steps=target,
                                               progress=progress, log=log)
        # 3. PPO inside the model, continuing the same agent
        agent, imagined = _policy(output_dir, loop_hp, trainer.model, data_dir, seed, epoch,
                                  progress)
        if epoch < len(done):
            continue  # this epoch was finished before a restart: only the agent was rebuilt
        # 4. evaluate for real
        result = evaluate_real(problem, loop_hp,
                               lambda obs, key, a=agent: a.act(obs, key, greedy=True), seed, epoch)
        record = {"epoch": epoch, "real_return_mean": round(float(np.mean(result)), 3),
                  "real_return_std": round(float(np.std(result)), 3),
                  "real_env_steps": data.load_spec(data_dir).env_steps_of(),
                  "model_dev_loss": trainer.dev_loss(),
                  "imagined_env_steps": agent.env_steps,
                  "imagined_return_mean": imagined}
        with open(history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        done.append(record)
        with tf.summary.create_file_writer(output_dir).as_default(step=record["real_env_steps"]):
            for name in ("real_return_mean", "model_dev_loss"):
                if record[name] is not None:
                    tf.summary.scalar(f"simple/{name}", record[name])
        _plot(done, os.path.join(output_dir, "simple_curve.png"), loop_hp.problem)
        log(f"SimPLe epoch {epoch}: real return {record['real_return_mean']:.1f} after "
            f"{record['real_env_steps']} real steps")
    return done


def evaluate_real(problem: Any, loop_hp: HParams, policy: Any, seed: int,
                  epoch: int) -> np.ndarray:
    """Returns of ``loop_hp.eval_episodes`` real episodes of ``policy``, on the envs and seeds
    the loop scores its epoch ``epoch`` with (so other policies can be scored identically)."""
    env = problem.make_env(int(loop_hp.eval_episodes), seed=seed + 999)
    try:
        return loops.evaluate(env, policy, seed=seed + 1000 + epoch)
    finally:
        _close(env)


def _policy(output_dir: str, loop_hp: HParams, model: Any, data_dir: str, seed: int,
            epoch: int, progress: bool) -> tuple[PPO, float | None]:
    """The PPO agent, restored and trained in imagination up to this epoch's iteration target,
    and the mean return of the imagined episodes that ended in the epoch's last tenth (None
    when nothing was left to train or no episode ended)."""
    ppo_hp = registry.hparams_with_overrides(loop_hp.ppo_hparams_set, loop_hp.ppo_hparams)
    ppo_hp.learning_rate_decay = False  # the schedule's end is unknown: SimPLe keeps a constant
    sim = SimulatedBatchEnv(model, start_windows(data_dir, model.history), int(ppo_hp.num_envs),
                            int(loop_hp.simulated_rollout_length))
    agent = PPO(sim, ppo_hp, total_env_steps=int(loop_hp.ppo_steps_per_epoch), seed=seed)
    ckpt = tf.train.Checkpoint(state=agent.variables())
    manager = tf.train.CheckpointManager(ckpt, os.path.join(output_dir, "policy"), 2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_consumed()
        agent.restart_envs()  # imagined episodes start from the (grown) real data
    target = (epoch + 1) * agent.num_iterations
    returns, episodes = [], []
    with tqdm.tqdm(total=(target - agent.iteration) * agent.steps_per_iteration, unit="step",
                   unit_scale=True, desc=f"ppo in imagination, epoch {epoch}", leave=False,
                   disable=not progress) as bar:
        while agent.iteration < target:
            out = agent.train(min(int(ppo_hp.iterations_per_call), target - agent.iteration))
            returns.append(out["return_sum"][:, 0])
            episodes.append(out["episodes"][:, 0])
            bar.update(len(out["episodes"]) * agent.steps_per_iteration)
    manager.save(checkpoint_number=agent.iteration)
    if not returns:
        return agent, None
    r, e = np.concatenate(returns), np.concatenate(episodes)
    tail = slice(-max(1, len(r) // 10), None)
    ended = float(e[tail].sum())
    return agent, round(float(r[tail].sum()) / ended, 3) if ended else None


def _plot(records: list[dict[str, Any]], path: str, problem: str) -> None:
    """Real return after each epoch against the real env steps spent so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["real_env_steps"] for r in records], [r["real_return_mean"] for r in records],
            "o-")
    ax.set_xlabel("real env steps")
    ax.set_ylabel("greedy return (real env)")
    ax.set_title(f"SimPLe on {problem}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _close(env: Any) -> None:
    """Closes a host-stepped env (emulators, subprocesses); native envs hold nothing."""
    if hasattr(env, "close"):
        env.close()


def _read(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def _claim(output_dir: str, loop_hp: HParams, seed: int) -> None:
    """Writes ``config.json``, or checks a rerun asks for the same loop."""
    path = os.path.join(output_dir, "config.json")
    config = {"loop": json.loads(loop_hp.to_json()), "seed": seed}
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) != config:
                raise UserError(f"'{output_dir}' holds a SimPLe run with other settings; use "
                                "another --output_dir or the same flags to resume")
        return
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
