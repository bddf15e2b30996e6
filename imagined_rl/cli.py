"""``imagined-rl``: the command line, with tensor2tensor's t2t-trainer flag names.

    imagined-rl train                      # PPO on native CartPole-v1, a few minutes on a CPU
    imagined-rl train --env=Pendulum-v1 --hparams_set=ppo_pendulum --output_dir=runs/pend
    imagined-rl train --hparams="learning_rate_constant=1e-3,num_envs=8" --train_steps=200000
    imagined-rl evaluate --output_dir=runs/pend --episodes=32 --json
    imagined-rl datagen --problem=gym_pong_random --data_dir=data/pong --num_steps=100000
    imagined-rl train --model=vector_ensemble --data_dir=data/cartpole --output_dir=runs/wm
    imagined-rl evaluate_model --output_dir=runs/wm --horizon=50
    imagined-rl train_model_based --loop_hparams_set=rlmb_cartpole --output_dir=runs/simple
    imagined-rl datagen --problem=gym_pong_random --data_dir=data/pong_t2t --format=t2t
    imagined-rl t2t_usr_dir                # for t2t-trainer --t2t_usr_dir=... (imagined_rl_*)
    imagined-rl --registry_help            # every registered hparams set, problem, env, model

Mistakes in what was typed (unknown names, malformed --hparams, a broken custom env) end with one
line ``imagined-rl: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

from imagined_rl import registry
from imagined_rl.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "CartPole-v1",
                    "gymnasium id of a registered native env, or module.path:Factory")
flags.DEFINE_string("problem", None, "registered problem name (its env replaces --env)")
flags.DEFINE_string("hparams_set", None,
                    "registered hparams set; default: the env's tuned set, else ppo_base")
flags.DEFINE_string("hparams", "", 'comma-separated overrides, e.g. "num_envs=8,gae_gamma=0.9"')
flags.DEFINE_string("hparams_sweep", "",
                    'PPO: per-agent values in one compiled call, e.g. '
                    '"learning_rate_constant=1e-4|3e-4|1e-3;gae_gamma=0.99|0.99|0.9" (sets '
                    "num_seeds to the number of values unless given)")
flags.DEFINE_string("output_dir", None, "run directory; default runs/<env>-<hparams_set>-s<seed>")
flags.DEFINE_integer("train_steps", None, "PPO: env steps per agent; --model: optimiser steps "
                     "(overrides the hparam)")
flags.DEFINE_integer("seed", 0, "random seed; the same seed reproduces the run")
flags.DEFINE_integer("save_checkpoints_secs", 30, "seconds between checkpoints")
flags.DEFINE_integer("episodes", 16, "evaluation episodes")
flags.DEFINE_bool("json", False, "evaluate, evaluate_model: print one JSON object")
flags.DEFINE_integer("horizon", 50, "evaluate_model: open-loop steps")
flags.DEFINE_string("loop_hparams_set", "rlmb_cartpole", "train_model_based: the SimPLe loop set")
flags.DEFINE_string("loop_hparams", "", "train_model_based: overrides of the loop set")
flags.DEFINE_bool("progress", True, "show a progress bar")
flags.DEFINE_bool("registry_help", False, "list registered hparams sets, problems, envs, models")
flags.DEFINE_string("data_dir", None, "datagen: where shards go; train --model: what to learn")
flags.DEFINE_string("model", None, "train a registered world model (e.g. vector_ensemble) on "
                    "--data_dir instead of PPO")
flags.DEFINE_integer("num_steps", None, "datagen: env steps to record (default: the problem's)")
flags.DEFINE_integer("steps_per_shard", None, "datagen: steps per shard (default: the problem's)")
flags.DEFINE_enum("format", "imagined_rl", ["imagined_rl", "t2t"],
                  "datagen: our layout, or tensor2tensor's file names and fields (t2t's readers "
                  "and t2t-trainer take it)")
flags.DEFINE_enum("distribute", "auto", ["auto", "none"],
                  "train, train_model_based: auto picks a TPU, then several workers (TF_CONFIG "
                  "or a Slurm step), then several GPUs, else one device; none: one device")
flags.DEFINE_string("tpu", None, "with --distribute=auto: a TPU name or address (local: this "
                    "TPU VM); failing to reach it is an error, not a fallback")
flags.DEFINE_string("policy_dir", None, "datagen: record with this PPO run's policy, not random")

COMMANDS = ("train", "evaluate", "datagen", "evaluate_model", "train_model_based", "t2t_usr_dir")
# The tuned hparams set for an env id when --hparams_set is not given.
DEFAULT_HPARAMS = {"CartPole-v1": "ppo_cartpole", "Pendulum-v1": "ppo_pendulum"}


def _env_id() -> str:
    """The env to train on: the problem's, when --problem is given."""
    if FLAGS.problem:
        return registry.problem(FLAGS.problem).env_id
    return FLAGS.env


def _require(hp, set_name: str, names: tuple[str, ...], kind: str) -> None:
    """A one-line error when an hparams set of another family is given."""
    missing = [n for n in names if n not in hp]
    if missing:
        raise UserError(f"hparams set '{set_name}' is not {kind} set (it lacks "
                        f"{', '.join(missing)}); see --registry_help")


def _strategy_and_dir(output_dir: str):
    """The picked ``tf.distribute`` strategy (said in one line) and this worker's directory."""
    from imagined_rl import distribute

    strategy, what = distribute.pick(FLAGS.distribute, FLAGS.tpu)
    print(f"distribute: {what}", flush=True)
    return strategy, distribute.worker_dir(strategy, output_dir)


def train() -> int:
    if FLAGS.model:
        return train_model()
    env_id = _env_id()
    default = (registry.problem(FLAGS.problem).hparams_set if FLAGS.problem
               else DEFAULT_HPARAMS.get(env_id, "ppo_base"))
    set_name = FLAGS.hparams_set or default
    hp = registry.hparams_with_overrides(set_name, FLAGS.hparams)
    _require(hp, set_name, ("num_envs", "epoch_length", "optimization_epochs"), "a PPO")
    if FLAGS.hparams_sweep:
        _apply_sweep(hp, FLAGS.hparams_sweep)
    if FLAGS.train_steps is not None:
        hp.train_steps = FLAGS.train_steps
    from imagined_rl import loops  # imports TensorFlow: after the cheap checks of the flags
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"{env_id.replace('/', '_').replace(':', '_')}-{set_name}-s{FLAGS.seed}")
    config = loops.RunConfig(env=env_id, hparams_set=set_name, hparams=hp.values(),
                             seed=FLAGS.seed, problem=FLAGS.problem)
    strategy, output_dir = _strategy_and_dir(output_dir)
    print(f"training PPO on {env_id} with {set_name} for {hp.train_steps} env steps "
          f"-> {output_dir}", flush=True)
    loops.train_model_free(config, output_dir, save_checkpoints_secs=FLAGS.save_checkpoints_secs,
                           eval_episodes=FLAGS.episodes, progress=FLAGS.progress,
                           strategy=strategy)
    return 0


def train_model() -> int:
    """``train --model=NAME --data_dir=D``: fit a world model to recorded experience."""
    if not FLAGS.data_dir:
        raise UserError("train --model needs --data_dir=<recorded data> (see imagined-rl datagen)")
    registry.model(FLAGS.model)  # unknown names fail here, with close matches
    from imagined_rl.world_models import trainer

    set_name = FLAGS.hparams_set or trainer.DEFAULT_HPARAMS.get(FLAGS.model)
    if set_name is None:
        raise UserError(f"model {FLAGS.model} has no default hparams set; pass --hparams_set")
    hp = registry.hparams_with_overrides(set_name, FLAGS.hparams)
    _require(hp, set_name, ("history", "batch_size", "train_steps"), "a world-model")
    if FLAGS.train_steps is not None:
        hp.train_steps = FLAGS.train_steps
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"{FLAGS.model}-{os.path.basename(os.path.normpath(FLAGS.data_dir))}-s{FLAGS.seed}")
    config = trainer.ModelRunConfig(model=FLAGS.model, hparams_set=set_name, hparams=hp.values(),
                                    data_dir=os.path.abspath(FLAGS.data_dir), seed=FLAGS.seed)
    strategy, output_dir = _strategy_and_dir(output_dir)
    print(f"training world model {FLAGS.model} ({set_name}) on {FLAGS.data_dir} for "
          f"{hp.train_steps} steps -> {output_dir}", flush=True)
    trainer.train_world_model(config, output_dir, save_checkpoints_secs=FLAGS.save_checkpoints_secs,
                              progress=FLAGS.progress, strategy=strategy)
    return 0


def evaluate() -> int:
    from imagined_rl import loops

    if not FLAGS.output_dir:
        raise UserError("evaluate needs --output_dir=<a training run directory>")
    agent, config = loops.restore_agent(FLAGS.output_dir)
    result = loops.evaluate_agent(agent, config, FLAGS.episodes)
    if FLAGS.json:
        print(json.dumps(result))
    else:
        print(f"{config.env}: mean return {result['mean_return']:.2f} ± "
              f"{result['std_return']:.2f} over {result['episodes']} episodes "
              f"(agent at env step {result['env_steps']}){loops.unfinished_note(result)}")
    return 0


def datagen() -> int:
    if not FLAGS.problem or not FLAGS.data_dir:
        raise UserError("datagen needs --problem=<name> and --data_dir=<dir>")
    problem = registry.problem(FLAGS.problem)
    from imagined_rl import data, loops
    from imagined_rl.envs.core import random_actions

    env = problem.make_env(problem.num_envs, seed=FLAGS.seed)
    if FLAGS.policy_dir:
        agent, config = loops.restore_agent(FLAGS.policy_dir)
        if (agent.env.observation_spec != env.observation_spec
                or agent.env.action_spec != env.action_spec):
            raise UserError(f"policy in '{FLAGS.policy_dir}' was trained on {config.env}, whose "
                            f"observations or actions differ from {FLAGS.problem}'s")
        policy = lambda obs, key: agent.act(obs, key)
        policy_id = f"{os.path.abspath(FLAGS.policy_dir)}@{agent.env_steps}"
    else:
        policy = lambda obs, key: random_actions(env.action_spec, env.num_envs, key)
        policy_id = "random"
    summary = data.record(
        env, policy, FLAGS.num_steps or problem.num_steps, FLAGS.data_dir, FLAGS.seed,
        steps_per_shard=FLAGS.steps_per_shard or problem.steps_per_shard,
        problem=FLAGS.problem, progress=FLAGS.progress, policy_id=policy_id, style=FLAGS.format)
    print(f"{FLAGS.problem}: wrote {summary.shards_written} shards ({summary.steps} steps, "
          f"{summary.episodes} episodes), kept {summary.shards_skipped} complete ones; "
          f"{summary.num_shards} shards in {summary.data_dir}")
    return 0


def t2t_usr_dir() -> int:
    """``t2t_usr_dir``: prints the directory to pass to t2t-trainer's ``--t2t_usr_dir``."""
    print(os.path.join(os.path.dirname(os.path.abspath(__file__)), "t2t_usr"))
    return 0


def evaluate_model() -> int:
    """``evaluate_model --output_dir=D``: open-loop error of a trained world model on dev data."""
    if not FLAGS.output_dir:
        raise UserError("evaluate_model needs --output_dir=<a world-model run directory>")
    from imagined_rl.world_models.evaluate import evaluate_model_dir

    result = evaluate_model_dir(FLAGS.output_dir, FLAGS.data_dir, FLAGS.horizon)
    if FLAGS.json:
        print(json.dumps(result))
        return 0
    print(f"1-step error {result['one_step_error']:.3g} (copy-last-frame "
          f"{result['one_step_copy_error']:.3g}); {FLAGS.horizon}-step error "
          f"{result['error'][-1]:.3g} (copy {result['copy_error'][-1]:.3g}); " + ", ".join(
              f"{k} {v:.2f} (always the most common reward: "
              f"{result['majority_' + k]:.2f})"
              for k, v in result.items() if k.startswith("reward_accuracy")))
    print(f"video: {result['video']}")
    return 0


def train_model_based() -> int:
    """``train_model_based``: the SimPLe loop (real data, world model, PPO in imagination)."""
    hp = registry.hparams_with_overrides(FLAGS.loop_hparams_set, FLAGS.loop_hparams)
    _require(hp, FLAGS.loop_hparams_set, ("epochs", "model", "ppo_hparams_set"), "a SimPLe loop")
    if FLAGS.problem:  # t2t-style: --problem picks the game of a loop set
        hp.problem = FLAGS.problem
    registry.problem(hp.problem)
    registry.model(hp.model)
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"simple-{FLAGS.loop_hparams_set}-{hp.problem}-s{FLAGS.seed}")
    from imagined_rl import simple

    strategy, output_dir = _strategy_and_dir(output_dir)
    print(f"SimPLe loop {FLAGS.loop_hparams_set}: {hp.epochs} epochs on {hp.problem} with "
          f"{hp.model} -> {output_dir}", flush=True)
    simple.train_model_based(output_dir, hp, seed=FLAGS.seed, progress=FLAGS.progress,
                             strategy=strategy)
    return 0


def _apply_sweep(hp, sweep: str) -> None:
    """``--hparams_sweep`` into the PPO hparams: one agent per value (num_seeds)."""
    from imagined_rl.ppo import parse_sweep

    counts = {len(v.split("|")) for v in (p.partition("=")[2] for p in sweep.split(";") if p)}
    if int(hp.num_seeds) == 1 and len(counts) == 1:
        hp.num_seeds = counts.pop()
    parse_sweep(sweep, int(hp.num_seeds))  # checked here: one line if malformed
    hp.hparams_sweep = sweep


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint chatter; our output is print()
    if FLAGS.registry_help:
        print(registry.help_string())
        return 0
    command = argv[1] if len(argv) > 1 else "train"
    if len(argv) > 2 or command not in COMMANDS:
        extra = " ".join(argv[1:])
        raise UserError(f"unknown command '{extra}'; use one of: {', '.join(COMMANDS)}")
    commands = {"train": train, "evaluate": evaluate, "datagen": datagen,
                "evaluate_model": evaluate_model, "train_model_based": train_model_based,
                "t2t_usr_dir": t2t_usr_dir}
    return commands[command]()


def _require_tensorflow() -> None:
    """One line, not a traceback, when no TensorFlow build was installed (it is an extra)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise UserError("TensorFlow is not installed; install the build for your machine: "
                        "pip install 'imagined_rl[cpu]' (or [gpu], [tpu]; from a checkout: "
                        "pip install -e '.[cpu]')")


def _main(argv: list[str]) -> None:
    try:
        _require_tensorflow()
        sys.exit(main(argv))
    except UserError as e:
        print(f"imagined-rl: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("imagined-rl: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def run() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    run()
