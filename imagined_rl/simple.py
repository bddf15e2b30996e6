"""The SimPLe loop: collect real data -> train the world model -> train PPO in imagination ->
evaluate for real -> repeat (Kaiser et al. 2019, tensor2tensor's ``trainer_model_based``).

    imagined-rl train_model_based --loop_hparams_set=rlmb_base --problem=gym_pong_random

Everything lives under ``output_dir``:

    data/            real experience, one collection epoch per loop epoch (random policy first,
                     then the current policy, which with ``real_ppo_learning_rate_constant > 0``
                     also learns from it, as t2t's did), via :func:`imagined_rl.data.record`
    world_model/     the world-model run (generic trainer); its step target grows each epoch
    policy/          the PPO agent's checkpoints; its iteration target grows each epoch
    videos/          per epoch, an imagined rollout beside the real one (GIF; PNG for vectors)
    status.json      the epoch and phase the loop is in now
    simple.jsonl     one line per finished epoch: real return (per sampling temperature), real
                     env steps so far (every step the real env took, kept in the data or not),
                     the model's dev loss and reward accuracy@12/@50, the imagined return

One process keeps one world model, one :class:`~imagined_rl.envs.simulated.FrameStore` of the
real frames on the device (grown each epoch) and one PPO agent training inside the model, so
the compiled imagination program is built once. Every phase resumes where it stopped: recording
skips complete shards; the world model is checkpointed at the end of each epoch's training and a
killed phase is redone from there (same data order, so the same weights); the agent is
checkpointed through its phase (its imagined envs are part of its state) and at its end. So
rerunning the same command after a kill continues the loop and writes the same record (on
CPU; GPU kernels are deterministic only with ``tf.config.experimental.enable_op_determinism()``).

Schedules (tensor2tensor's, see ``hparams/rlmb.py``): the world model trains
``model_train_steps`` more steps each epoch, times ``initial_epoch_train_steps_multiplier`` at
epochs 0, 1, 4, 9 and 14; PPO runs ``ppo_epochs_num`` iterations each epoch (or enough for
``ppo_steps_per_epoch`` imagined steps), doubled at epoch 1 and 3 and 7 epochs before the end and
tripled at the last one when ``ppo_schedule="t2t"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl import data, distribute, loops, plots, registry, rundir
from imagined_rl.envs.core import FrameStack, random_actions
from imagined_rl.envs.simulated import FrameStore, SimulatedBatchEnv
from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams
from imagined_rl.ppo import PPO
from imagined_rl.world_models import evaluate as wm_evaluate
from imagined_rl.world_models import trainer as wm_trainer

MODEL_MULTIPLIER_EPOCHS = (0, 1, 4, 9, 14)  # t2t's world_model_step_increment


# --------------------------------------------------------------------------------------------
# Schedules: pure functions of the loop hparams.


def real_steps(hp: HParams, epoch: int) -> int:
    """Real env steps asked for in ``epoch`` (see :func:`steps_per_shard` for the rounding)."""
    return int(hp.real_steps_first if epoch == 0 else hp.real_steps_per_epoch)


def steps_per_shard(steps: int) -> int:
    """The shard size of an epoch's recording: a quarter of its steps, at least 1000. Each
    shard is cut at ``ceil(steps_per_shard / envs)`` batch steps, so an epoch takes
    ``ceil(steps / per_shard) * ceil(per_shard / envs) * envs`` real steps."""
    return max(1000, steps // 4)


def model_steps_target(hp: HParams, epoch: int) -> int:
    """World-model optimiser steps done by the end of ``epoch`` (cumulative)."""
    mult = int(hp.get("initial_epoch_train_steps_multiplier", 1))
    return sum(int(hp.model_train_steps) * (mult if e in MODEL_MULTIPLIER_EPOCHS else 1)
               for e in range(epoch + 1))


def ppo_multiplier(hp: HParams, epoch: int) -> int:
    """t2t's PPO schedule: 3x at the last epoch, 2x at epoch 1 and 3 and 7 epochs before the
    last; 1 otherwise (and always, unless ``ppo_schedule="t2t"``)."""
    if hp.get("ppo_schedule", "flat") != "t2t":
        return 1
    last = int(hp.epochs) - 1
    if epoch == last:
        return 3
    return 2 if epoch == 1 or epoch + 3 == last or epoch + 7 == last else 1


def ppo_iterations_target(hp: HParams, epoch: int, steps_per_iteration: int) -> int:
    """PPO iterations done in imagination by the end of ``epoch`` (cumulative)."""
    if "ppo_epochs_num" in hp:
        per_epoch = int(hp.ppo_epochs_num)
    else:
        per_epoch = max(1, math.ceil(int(hp.ppo_steps_per_epoch) / steps_per_iteration))
    return sum(per_epoch * ppo_multiplier(hp, e) for e in range(epoch + 1))


# --------------------------------------------------------------------------------------------
# The loop.


def train_model_based(output_dir: str, loop_hp: HParams, seed: int = 0, progress: bool = True,
                      log=print, strategy: tf.distribute.Strategy | None = None
                      ) -> list[dict[str, Any]]:
    """Runs (or resumes) ``loop_hp.epochs`` SimPLe epochs; returns the per-epoch records.

    Under ``strategy`` the world model and PPO in imagination train data parallel across its
    replicas; collecting and evaluating on the real env stay on one device."""
    os.makedirs(output_dir, exist_ok=True)
    _claim(output_dir, loop_hp, seed)
    loop = _Loop(output_dir, loop_hp, seed, progress, log, strategy)
    history_path = os.path.join(output_dir, "simple.jsonl")
    done = rundir.read_jsonl(history_path)
    for epoch in range(len(done), int(loop_hp.epochs)):
        _status(output_dir, epoch, "collect")
        loop.collect(epoch)
        _status(output_dir, epoch, "train_model")
        dev_loss = loop.train_model(epoch)
        _status(output_dir, epoch, "train_policy")
        imagined = loop.train_policy(epoch)
        _status(output_dir, epoch, "evaluate")
        returns = {t: loop.evaluate(epoch, t) for t in loop.temperatures}
        main = returns[loop.temperatures[0]]
        record = {"epoch": epoch, "real_return_mean": round(float(np.mean(main)), 3),
                  "real_return_std": round(float(np.std(main)), 3),
                  "real_return_by_temperature": {
                      f"{t:g}": round(float(np.mean(r)), 3) for t, r in returns.items()},
                  "real_env_steps": data.load_spec(loop.data_dir).env_steps_of(),
                  "model_dev_loss": dev_loss,
                  **loop.model_quality(epoch),
                  "imagined_env_steps": loop.agent.env_steps,
                  "imagined_return_mean": imagined}
        with open(history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        done.append(record)
        _summaries(output_dir, record)
        _plot(done, os.path.join(output_dir, "simple_curve.png"), loop_hp.problem)
        log(f"SimPLe epoch {epoch}: real return {record['real_return_mean']:.1f} after "
            f"{record['real_env_steps']} real steps")
    _status(output_dir, int(loop_hp.epochs), "done")
    loop.close()
    return done


class _Loop:
    """The parts one loop process keeps: the world model, the frame store, the agent (each
    built on first use, restored from its checkpoint when there is one)."""

    def __init__(self, output_dir: str, hp: HParams, seed: int, progress: bool, log,
                 strategy: tf.distribute.Strategy | None = None):
        self.output_dir, self.hp, self.seed, self.progress, self.log = (
            output_dir, hp, seed, progress, log)
        self.strategy = strategy
        self.problem = loop_problem(hp)
        self.data_dir = os.path.join(output_dir, "data")
        self.frame_stack = int(hp.get("frame_stack_size", 1))
        # t2t's real_batch_size: envs stepped together while collecting (fewer envs, longer
        # stretches of each game in an epoch's budget)
        self.real_num_envs = int(hp.get("real_num_envs", self.problem.num_envs))
        history = int(registry.hparams(hp.model_hparams_set).get("history", 1))
        if self.frame_stack > history:
            raise UserError(f"frame_stack_size={self.frame_stack} is more than the world "
                            f"model's history ({history}, {hp.model_hparams_set}): imagination "
                            "can only show the frames the model sees")
        self.temperatures = [float(t) for t in hp.get("eval_sampling_temps", (0.0,))]
        self.ppo_hp = registry.hparams_with_overrides(hp.ppo_hparams_set, hp.ppo_hparams)
        self.ppo_hp.learning_rate_decay = False  # SimPLe keeps a constant learning rate
        self._trainer: wm_trainer.ModelTrainer | None = None
        self._store: FrameStore | None = None
        self._stored_epochs = 0
        self._agent: PPO | None = None
        self._manager: tf.train.CheckpointManager | None = None
        self._imagined_path = os.path.join(output_dir, "policy", "imagined.jsonl")
        self._collect_path = os.path.join(output_dir, "policy", "collect.json")

    # -- the parts ------------------------------------------------------------------------
    @property
    def trainer(self) -> wm_trainer.ModelTrainer:
        if self._trainer is None:
            config = wm_trainer.ModelRunConfig(
                self.hp.model, self.hp.model_hparams_set,
                registry.hparams_with_overrides(self.hp.model_hparams_set,
                                                self.hp.model_hparams).values(),
                os.path.abspath(self.data_dir), self.seed)
            self._trainer = wm_trainer.open_run(
                config, os.path.join(self.output_dir, "world_model"), self.log, self.strategy)
        return self._trainer

    def store(self, epochs: int) -> FrameStore:
        """The frame store holding the train frames of the first ``epochs`` epochs."""
        if self._store is None:
            spec = data.load_spec(self.data_dir)
            history = self.trainer.model.history
            # mirrored under a strategy: each replica's XLA program reads its own copy
            with (self.strategy or tf.distribute.get_strategy()).scope():
                self._store = FrameStore(spec.obs_shape, spec.obs_dtype, history,
                                         self._capacity())
        for epoch in range(self._stored_epochs, epochs):
            for chunk in data.frame_chunks(self.data_dir, "train", epochs=[epoch]):
                self._store.add(*chunk)
        self._stored_epochs = max(self._stored_epochs, epochs)
        return self._store

    def _capacity(self) -> int:
        """Frames the store must hold: every frame is a step's arrival or an episode's first,
        and every stored episode has a step, so at most 2 frames per real env step (plus the
        rounding of each shard up to whole batch steps)."""
        n = self.real_num_envs
        total = 0
        for epoch in range(int(self.hp.epochs)):
            steps = real_steps(self.hp, epoch)
            per_shard = steps_per_shard(steps)
            total += math.ceil(steps / per_shard) * math.ceil(per_shard / n) * n
        return 2 * total

    def agent_for(self, epochs: int) -> PPO:
        """The agent (restored if checkpointed), imagining from the first ``epochs`` epochs."""
        store = self.store(epochs)
        if self._agent is None:
            sim = SimulatedBatchEnv(self.trainer.model, store, int(self.ppo_hp.num_envs),
                                    int(self.hp.simulated_rollout_length), self.frame_stack)
            agent = PPO(sim, self.ppo_hp, total_env_steps=int(self.hp.get(
                "ppo_steps_per_epoch", 1)), seed=self.seed, strategy=self.strategy)
            ckpt = tf.train.Checkpoint(state=agent.variables())
            self._manager = tf.train.CheckpointManager(
                ckpt, os.path.join(self.output_dir, "policy"), 2)
            latest = distribute.common_checkpoint(self.strategy, self._manager)
            if latest:
                ckpt.restore(latest).assert_consumed()
            # per-iteration imagined returns; lines past the checkpoint are redone
            rundir.keep_jsonl(self._imagined_path, lambda r: r["iteration"] <= agent.iteration)
            self._agent = agent
        return self._agent

    @property
    def agent(self) -> PPO:
        assert self._agent is not None, "train_policy first"
        return self._agent

    # -- the phases -----------------------------------------------------------------------
    def collect(self, epoch: int) -> None:
        """Records the epoch's real experience: a random policy first, then the agent's --
        which, with ``real_ppo_learning_rate_constant > 0``, keeps learning on what it records
        (t2t's ``train_agent_real_env``: see :class:`_RealPPO`)."""
        learner = None
        if epoch > 0 and float(self.hp.get("real_ppo_learning_rate_constant", 0.0)) > 0:
            learner = self._real_ppo(epoch)
            if learner is None:
                return  # this epoch's collection (and the agent's learning in it) is done
        env = self.problem.make_env(self.real_num_envs, seed=self.seed + epoch)
        if epoch == 0:
            policy = lambda obs, key: random_actions(env.action_spec, env.num_envs, key)
            policy_id, stack = "random", 1
        else:
            agent = self.agent_for(epoch)
            policy = lambda obs, key: agent.act(obs, key)
            policy_id, stack = f"policy@epoch{epoch}", self.frame_stack
        steps = real_steps(self.hp, epoch)
        try:
            data.record(env, policy, steps, self.data_dir, self.seed, epoch=epoch,
                        problem=self.problem.name, steps_per_shard=steps_per_shard(steps),
                        progress=self.progress, policy_id=policy_id, frame_stack=stack,
                        finish_episodes=False,  # SimPLe's: cut at the budget
                        on_step=learner)
        finally:
            _close(env)
        if learner is not None:
            learner.flush()
            self._manager.save(checkpoint_number=_number(self.agent))
            _write_json(self._collect_path, {"epoch": epoch, "from": learner.start,
                                             "done": True, "updates": learner.updates})

    def _real_ppo(self, epoch: int) -> _RealPPO | None:
        """The recording hook that trains the agent in ``epoch``'s collection, or None where
        that collection finished before. A collection that trains the agent is redone whole
        after a kill (its shards came from a policy that changed as it recorded): from the
        checkpoint it started from, its partial shards deleted."""
        agent = self.agent_for(epoch)
        if self.strategy is not None and self.strategy.num_replicas_in_sync > 1:
            raise UserError("real_ppo_learning_rate_constant > 0 trains on the real env on one "
                            "device; set it to 0 to distribute the loop")
        mark = _read_json(self._collect_path)
        if mark.get("epoch") == epoch and mark.get("done"):
            return None
        start = self._manager.latest_checkpoint
        if mark.get("epoch") == epoch:  # killed inside it: back to where it started
            start = mark["from"]
            tf.train.Checkpoint(state=agent.variables()).restore(start).assert_consumed()
            data.discard_epoch(self.data_dir, epoch)
        _write_json(self._collect_path, {"epoch": epoch, "from": start, "done": False})
        return _RealPPO(agent, int(self.hp.get("real_ppo_epoch_length", 64)),
                        float(self.hp.real_ppo_learning_rate_constant), start)

    def train_model(self, epoch: int) -> float | None:
        """Trains the world model on every epoch's data so far; returns its dev loss."""
        trainer = self.trainer
        trainer.reset_dev_sample()  # scored on this epoch's held-out data
        trainer.train(model_steps_target(self.hp, epoch), save_checkpoints_secs=math.inf,
                      progress=self.progress)
        return trainer.dev_loss()

    def train_policy(self, epoch: int) -> float | None:
        """Trains PPO inside the model up to this epoch's iteration target; returns the mean
        return of the imagined episodes that ended in the phase's last tenth (None if none)."""
        agent = self.agent_for(epoch + 1)
        start = ppo_iterations_target(self.hp, epoch - 1, agent.steps_per_iteration) if (
            epoch) else 0
        target = ppo_iterations_target(self.hp, epoch, agent.steps_per_iteration)
        if agent.iteration == start:
            agent.restart_envs()  # the phase's imagined episodes start from this epoch's data
        per_call = int(self.ppo_hp.iterations_per_call)
        last_save = time.perf_counter()
        with tqdm.tqdm(total=(target - start) * agent.steps_per_iteration,
                       initial=(agent.iteration - start) * agent.steps_per_iteration,
                       unit="step", unit_scale=True, desc=f"ppo in imagination, epoch {epoch}",
                       leave=False, disable=not self.progress) as bar:
            while agent.iteration < target:
                first = agent.iteration
                out = agent.train(min(per_call, target - agent.iteration))
                with open(self._imagined_path, "a") as f:
                    f.writelines(json.dumps({"iteration": first + i + 1, "return_sum": float(r),
                                             "episodes": float(e)}) + "\n"
                                 for i, (r, e) in enumerate(zip(out["return_sum"][:, 0],
                                                                out["episodes"][:, 0])))
                bar.update(len(out["episodes"]) * agent.steps_per_iteration)
                if distribute.agree(self.strategy, time.perf_counter() - last_save > 60):
                    self._manager.save(checkpoint_number=_number(agent))
                    last_save = time.perf_counter()
        self._manager.save(checkpoint_number=_number(agent))
        rows = [r for r in rundir.read_jsonl(self._imagined_path)
                if start < r["iteration"] <= target]
        tail = rows[-max(1, len(rows) // 10):]
        ended = sum(r["episodes"] for r in tail)
        return round(sum(r["return_sum"] for r in tail) / ended, 3) if ended else None

    def evaluate(self, epoch: int, temperature: float) -> np.ndarray:
        return evaluate_real(self.problem, self.hp, lambda obs, key: self.agent.act(
            obs, key, temperature=temperature), self.seed, epoch)

    def model_quality(self, epoch: int) -> dict[str, Any]:
        """SimPLe's world-model metric, reward accuracy@12/@50 of open-loop rollouts on the dev
        episodes (None where no episode is long enough), and the epoch's video."""
        names = [f"{m}reward_accuracy@{n}" for n in (12, 50) for m in ("", "majority_")]
        out: dict[str, Any] = {**dict.fromkeys(names), "video": None}
        try:
            eps = wm_evaluate.episodes(self.data_dir, "dev")
        except UserError:
            return out
        model = self.trainer.model
        for horizon in (50, 12):
            try:
                result = wm_evaluate.open_loop(model, eps, horizon,
                                               int(self.hp.get("wm_eval_rollouts", 32)),
                                               self.seed)
            except UserError:
                continue
            for name in names:
                if out[name] is None and name in result:
                    out[name] = round(result[name], 4)
            if out["video"] is None:
                os.makedirs(os.path.join(self.output_dir, "videos"), exist_ok=True)
                path = wm_evaluate.write_video(
                    result, os.path.join(self.output_dir, "videos", f"epoch{epoch}"))
                out["video"] = os.path.relpath(path, self.output_dir)
            if all(out[name] is not None for name in names):
                break  # the 50-step rollouts scored @12 as well
        return out

    def close(self) -> None:
        self._trainer = self._store = self._agent = None


class _RealPPO:
    """t2t's ``train_agent_real_env`` as a recording hook: buffers what the agent's policy did
    on the real env and runs a PPO update on it (:meth:`PPO.learn`) every ``length`` batch steps
    and at each shard's end (the next shard resets the envs), so the agent learns model-free
    from every real step it records, beside what it learns in imagination."""

    def __init__(self, agent: PPO, length: int, learning_rate: float, start: str | None):
        self.agent, self.length, self.learning_rate, self.start = (
            agent, length, learning_rate, start)
        self.rows: list[dict[str, np.ndarray]] = []
        self.shard: int | None = None
        self.updates = 0

    def __call__(self, shard: int, step: dict[str, np.ndarray]) -> None:
        if shard != self.shard:
            self.flush()
            self.shard = shard
        self.rows.append(step)
        if len(self.rows) == self.length:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        seen = "policy_" if "policy_obs" in self.rows[0] else ""  # a frame stack: its stacks
        stack = lambda k: np.stack([r[k] for r in self.rows])
        self.agent.learn({"obs": stack(seen + "obs"), "action": stack("action"),
                          "reward": stack("reward"), "terminated": stack("terminated"),
                          "truncated": stack("truncated"), "final_obs": stack(seen + "final_obs"),
                          "last_obs": self.rows[-1][seen + "next_obs"]}, self.learning_rate)
        self.rows = []
        self.updates += 1


def _number(agent: PPO) -> int:
    """A policy checkpoint's number: the agent's Adam steps so far, which grow in imagination
    and on the real env alike (its iteration counts imagination's only)."""
    return int(agent.state["updates"].numpy())


def _read_json(path: str) -> dict[str, Any]:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_json(path: str, value: dict[str, Any]) -> None:
    rundir.atomic_write(path, json.dumps(value))


def loop_problem(hp: HParams) -> Any:
    """The loop's problem, with t2t's Atari knobs applied where the loop set has them:
    frames of ``210 / resize_height_factor`` x ``160 / resize_width_factor`` and up to
    ``max_num_noops`` no-ops after a reset."""
    problem = registry.problem(hp.problem)
    if hasattr(problem, "frame_size") and "resize_height_factor" in hp:
        problem = dataclasses.replace(problem, frame_size=(
            210 // int(hp.resize_height_factor), 160 // int(hp.get("resize_width_factor", 2))))
    if hasattr(problem, "noop_max") and "max_num_noops" in hp:
        problem = dataclasses.replace(problem, noop_max=int(hp.max_num_noops))
    return problem


def evaluate_real(problem: Any, loop_hp: HParams, policy: Any, seed: int,
                  epoch: int) -> np.ndarray:
    """Game scores of ``loop_hp.eval_episodes`` real episodes of ``policy`` (which sees the
    loop's frame stack), on the envs and seeds the loop scores its epoch ``epoch`` with (so
    other policies can be scored identically); episodes are capped at
    ``eval_max_episode_steps`` when set."""
    env = problem.make_env(int(loop_hp.eval_episodes), seed=seed + 999)
    k = int(loop_hp.get("frame_stack_size", 1))
    try:
        return loops.evaluate(FrameStack(env, k) if k > 1 else env, policy,
                              seed=seed + 1000 + epoch,
                              max_steps=loop_hp.get("eval_max_episode_steps", None))
    finally:
        _close(env)


def _status(output_dir: str, epoch: int, phase: str) -> None:
    """``status.json``: the phase the loop is in now, for a person (or a test) watching."""
    rundir.atomic_write(os.path.join(output_dir, "status.json"),
                        json.dumps({"epoch": epoch, "phase": phase, "time": time.time()}))


def _summaries(output_dir: str, record: dict[str, Any]) -> None:
    """The epoch's record as TensorBoard scalars, against real env steps."""
    with tf.summary.create_file_writer(output_dir).as_default(step=record["real_env_steps"]):
        for name, value in record.items():
            if isinstance(value, (int, float)) and name not in ("epoch", "real_env_steps"):
                tf.summary.scalar(f"simple/{name}", value)
        for t, value in record["real_return_by_temperature"].items():
            tf.summary.scalar(f"simple/real_return_temperature_{t}", value)


def _plot(records: list[dict[str, Any]], path: str, problem: str) -> None:
    """Real return after each epoch against the real env steps spent so far."""
    plots.curves(path, {"": ([r["real_env_steps"] for r in records],
                             [r["real_return_mean"] for r in records])},
                 "real env steps", "return (real env)", f"SimPLe on {problem}", style="o-")


def _close(env: Any) -> None:
    """Closes a host-stepped env (emulators, subprocesses); native envs hold nothing."""
    if hasattr(env, "close"):
        env.close()


def _claim(output_dir: str, loop_hp: HParams, seed: int) -> None:
    rundir.claim(output_dir, {"loop": json.loads(loop_hp.to_json()), "seed": seed},
                 "a SimPLe run")
