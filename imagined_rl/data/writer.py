"""Writing recorded experience: sharded, atomic, resumable, with every real env step counted.

Real env steps
    Each shard's cost in real env steps -- every step every env took while the shard was made,
    including those of episodes finished past the cut and of envs stepped after their episode
    was discarded -- is written to the spec's ``env_steps`` before the shard is renamed into
    place; ``DataSpec.env_steps_of()`` sums them. That, not the number of stored transitions,
    is the sample cost a sample-efficiency figure reports. (Steps an env takes inside its own
    reset, such as ALE's random no-op starts, are the env's business and not counted.)

Shards
    ``record`` collects ``ceil(num_steps / steps_per_shard)`` shards. Every shard is produced from
    an RNG key derived from ``(seed, epoch, global shard index)`` alone: a fresh env reset, then
    ``num_envs`` envs stepped together, each env's steps going to its own in-progress episode.
    Finished episodes go to the shard whole (never split across shards) until the shard holds at
    least ``steps_per_shard`` transitions; episodes still running at that moment are run to their
    end and kept (dropping them would over-represent short episodes), episodes begun after it are
    discarded. (``finish_episodes=False`` instead runs every env ``ceil(steps_per_shard /
    num_envs)`` steps and stores the running episodes cut there, as truncated.) A shard is
    written to ``<name>.tmp`` and renamed into place when complete, so a killed run never leaves
    a half shard; rerunning the same ``record`` call skips complete shards and regenerates the
    rest, and the result is byte-identical to an uninterrupted run (given the same policy).
    Global shards are assigned to ``dev`` evenly spaced (every ``1/dev_fraction``-th, at least
    one when ``dev_fraction > 0`` and there are two or more shards), the rest to
    ``train``. Files go through ``tf.io.gfile``; the rename is atomic on local disks, and on
    object stores (``gs://``) the final name still appears only once the shard is complete.

"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tqdm

from imagined_rl.data.format import (
    EPISODE_STRIDE,
    MAX_SHARDS,
    SPEC_FILE,
    SPLITS,
    STYLES,
    T2T_REWARD_RANGE,
    DataSpec,
    join,
    load_spec,
    shard_files,
    shard_paths,
    shard_splits,
    spec_for_env,
    write_spec,
)
from imagined_rl.envs.core import BatchEnv, FrameStack, Key, make_key, raw_reward, split
from imagined_rl.errors import UserError

Policy = Callable[[tf.Tensor, Key], tf.Tensor]  # policy(obs [N, ...], key) -> action [N, ...]
StepHook = Callable[[int, dict[str, np.ndarray]], None]



@dataclasses.dataclass
class RecordSummary:
    """What a :func:`record` call did; ``steps``/``episodes`` count the shards it wrote."""

    data_dir: str
    epoch: int
    num_shards: int
    shards_written: int = 0
    shards_skipped: int = 0
    steps: int = 0  # transitions in the written shards
    episodes: int = 0
    env_steps: int = 0  # every step the real env took for this epoch's shards, kept or not
    files: list[str] = dataclasses.field(default_factory=list)  # every shard of the epoch


@dataclasses.dataclass
class _Episode:
    """One env's episode in progress: frames 0..t (arrival obs, reward) and actions 0..t-1."""

    obs: list[np.ndarray]
    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=lambda: [0.0])
    unclipped: list[float] = dataclasses.field(default_factory=lambda: [0.0])
    terminated: bool = False

    @property
    def steps(self) -> int:
        return len(self.actions)


def _int64(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float(values: Any) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _bytes(values: Any) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


class _EpisodeEncoder:
    """Turns a finished :class:`_Episode` into its serialized ``tf.train.Example`` records."""

    def __init__(self, spec: DataSpec, epoch: int):
        self.spec = spec
        self.epoch_index = epoch
        self.epoch = _int64([epoch])
        self.shape = spec.obs_shape
        self.constant: dict[str, tf.train.Feature] = {}
        if spec.obs_encoding == "png":
            self.constant = {
                "image/format": _bytes([b"png"]),
                "image/height": _int64([self.shape[0]]),
                "image/width": _int64([self.shape[1]]),
            }
        elif spec.obs_encoding == "bytes":
            self.constant = {"observation/shape": _int64(list(self.shape))}
        self.null_action = np.zeros(spec.action_shape, np.int64 if spec.discrete else np.float32)

    def _obs_features(self, frames: np.ndarray) -> list[tuple[str, tf.train.Feature]]:
        enc = self.spec.obs_encoding
        if enc == "png":
            encoded = tf.io.encode_png(frames).numpy()  # one batched call per episode
            return [("image/encoded", _bytes([e])) for e in encoded]
        if enc == "float":
            flat = frames.astype(np.float32).reshape(len(frames), -1)
            return [("observation", _float(row.tolist())) for row in flat]
        frames = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        return [("observation/bytes", _bytes([f.tobytes()])) for f in frames]

    def encode(self, episode: _Episode, episode_id: int) -> list[bytes]:
        frames = np.stack(episode.obs)
        obs_features = self._obs_features(frames)
        last = len(episode.obs) - 1
        episode_feature = _int64([episode_id])
        records = []
        lo, hi = T2T_REWARD_RANGE
        for t in range(last + 1):
            action = episode.actions[t] if t < last else self.null_action
            action = np.asarray(action).reshape(-1)
            feature = {
                "frame_number": _int64([t]),
                "epoch": self.epoch,
                "episode": episode_feature,
                obs_features[t][0]: obs_features[t][1],
                "action": _int64(action.astype(np.int64).tolist())
                if self.spec.discrete
                else _float(action.astype(np.float32).tolist()),
                "reward": _float([episode.rewards[t]]),
                "unclipped_reward": _float([episode.unclipped[t]]),
                "done": _int64([int(t == last)]),
                "terminated": _int64([int(t == last and episode.terminated)]),
                **self.constant,
            }
            if self.spec.style == "t2t":  # exactly T2TEnv._generate_frames' fields
                del feature["episode"], feature["terminated"]
                reward = int(np.around(np.clip(episode.rewards[t], lo, hi)))
                feature["reward"] = _int64([reward - self.spec.min_reward])
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            # deterministic: protobuf map order varies between processes; keep bytes stable
            records.append(example.SerializeToString(deterministic=True))
        return records


def record(
    env: BatchEnv,
    policy: Policy,
    num_steps: int,
    data_dir: str,
    seed: int,
    *,
    dev_fraction: float = 0.1,
    steps_per_shard: int = 10_000,
    epoch: int = 0,
    problem: str | None = None,
    finish_episodes: bool = True,
    reward_clip: tuple[float, float] | None = None,
    progress: bool = True,
    max_episode_steps: int = 100_000,
    on_step: StepHook | None = None,
    policy_id: str = "random",
    frame_stack: int = 1,
    style: str = "imagined_rl",
) -> RecordSummary:
    """Records about ``num_steps`` env steps of ``policy`` on ``env`` into ``data_dir``.

    Writes ``ceil(num_steps / steps_per_shard)`` shards of collection epoch ``epoch`` (see the
    module docstring for the layout), each holding at least ``steps_per_shard`` transitions, so
    the total is at least ``num_steps``. With ``finish_episodes`` (the default) a shard holds
    whole episodes only: once it has ``steps_per_shard`` transitions in finished episodes, the
    episodes still running are run to their end, so a shard may exceed ``steps_per_shard`` by
    up to about ``num_envs`` episode lengths (size ``steps_per_shard`` well above that). With
    ``finish_episodes=False`` every env runs exactly ``ceil(steps_per_shard / num_envs)``
    steps and the episodes running at the end are stored cut there, as truncated (``done`` 1,
    ``terminated`` 0; t2t also stored the rollouts cut by the end of an epoch): use it when
    episodes are long compared with the budget, as in SimPLe's small Atari epochs.

    ``policy(obs, key)`` maps a batch of observations and a stateless RNG key to a batch of
    actions (for instance ``lambda obs, key: random_actions(env.action_spec, env.num_envs,
    key)``); it is traced into a ``tf.function`` together with ``env.step`` and must be
    deterministic given its key for the data to be reproducible.

    Resumable: complete shards already in ``data_dir`` are skipped, so rerunning the same call
    after a kill finishes the job with byte-identical data. A rerun with different arguments for
    the same epoch is refused (``UserError``). Not safe for two writers on one directory.

    ``frame_stack=k`` shows the policy the last ``k`` frames (a
    :class:`~imagined_rl.envs.core.FrameStack` of ``env``) while the data keeps single frames.

    ``reward_clip=(lo, hi)`` stores ``clip(reward, lo, hi)`` as ``reward`` (the training reward)
    beside the env's ``unclipped_reward``. ``max_episode_steps`` guards against an env that
    never ends an episode (each episode is buffered in memory until it ends). ``policy_id``
    names the policy in the epoch's recorded arguments, so a rerun with another policy is refused
    instead of mixing shards. ``on_step(shard,
    transition)``, if given, sees every env step of every shard this call generates, as numpy
    arrays: ``obs``, ``action``, ``reward``, ``unclipped_reward``, ``terminated``,
    ``truncated``, ``next_obs``, ``final_obs`` (each with the leading ``[num_envs]`` axis), and
    with ``frame_stack > 1`` the stacks the policy saw: ``policy_obs``, ``policy_next_obs``,
    ``policy_final_obs``.
    """
    num_steps, steps_per_shard, epoch = int(num_steps), int(steps_per_shard), int(epoch)
    if num_steps < 1:
        raise UserError(f"num_steps must be >= 1, got {num_steps}")
    if steps_per_shard < 1:
        raise UserError(f"steps_per_shard must be >= 1, got {steps_per_shard}")
    if not 0.0 <= dev_fraction < 1.0:
        raise UserError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    if epoch < 0:
        raise UserError(f"epoch must be >= 0, got {epoch}")
    num_shards = math.ceil(num_steps / steps_per_shard)
    if num_shards >= MAX_SHARDS:
        raise UserError(
            f"{num_shards} shards is too many (at most {MAX_SHARDS - 1}): raise steps_per_shard"
        )

    spec = dataclasses.replace(spec_for_env(env, problem), style=style)
    if style not in STYLES:
        raise UserError(f"unknown data style {style!r}: expected one of {', '.join(STYLES)}")
    if style == "t2t" and (spec.obs_encoding != "png" or not spec.discrete):
        raise UserError(
            f"t2t's data layout holds PNG frames and discrete actions; {spec.problem} has "
            f"{spec.obs_dtype}{list(spec.obs_shape)} observations and {spec.action['kind']} "
            "actions: record it in imagined_rl's layout"
        )
    spec = _claim_epoch(
        data_dir,
        spec,
        epoch,
        {
            "seed": int(seed),
            "num_steps": num_steps,
            "steps_per_shard": steps_per_shard,
            "dev_fraction": float(dev_fraction),
            "num_shards": num_shards,
            "num_envs": int(env.num_envs),
            "finish_episodes": bool(finish_episodes),
            "env": env.name,
            "reward_clip": None if reward_clip is None else [float(v) for v in reward_clip],
            "policy": policy_id,  # a resumed epoch must not mix shards of two policies
            "frame_stack": int(frame_stack),
        },
    )
    splits = shard_splits(num_shards, dev_fraction)
    t2t_problem = spec.problem if style == "t2t" else None
    paths = shard_paths(data_dir, splits, epoch, t2t_problem)
    stale_pattern = f"*.{epoch}.tmp" if t2t_problem else f"*.epoch{epoch}.tfrecord.tmp"
    for stale in tf.io.gfile.glob(join(data_dir, stale_pattern)):
        tf.io.gfile.remove(stale)  # left by a killed writer; its shard is regenerated below

    summary = RecordSummary(data_dir, epoch, num_shards, files=paths)
    root = make_key(seed)
    stepped = FrameStack(env, frame_stack) if frame_stack > 1 else env
    channels = env.observation_spec.shape[-1] if frame_stack > 1 else None
    with tqdm.tqdm(
        total=num_shards * steps_per_shard, unit="step", disable=not progress,
        desc=f"recording epoch {epoch}", dynamic_ncols=True,
    ) as bar:
        recorder = _ShardRecorder(
            data_dir, stepped, channels, _make_step_fn(stepped, policy, channels),
            _EpisodeEncoder(spec, epoch), steps_per_shard, finish_episodes, reward_clip,
            max_episode_steps, on_step, bar,
        )
        for shard, path in enumerate(paths):
            if tf.io.gfile.exists(path):
                summary.shards_skipped += 1
                bar.update(steps_per_shard)
                continue
            key = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(root, epoch), shard
            )
            steps, episodes = recorder.run(shard, key, path)
            summary.shards_written += 1
            summary.steps += steps
            summary.episodes += episodes
    summary.env_steps = load_spec(data_dir).env_steps_of(epoch)
    return summary


def _claim_epoch(
    data_dir: str, spec: DataSpec, epoch: int, args: dict[str, Any]
) -> DataSpec:
    """Checks ``data_dir`` can take epoch ``epoch`` recorded with ``args``; writes the spec.

    A new dir gets a fresh spec; an existing one must hold the same kind of data, and if it
    already has this epoch, recorded with the same arguments (that is a resume).
    """
    tf.io.gfile.makedirs(data_dir)
    if tf.io.gfile.exists(join(data_dir, SPEC_FILE)):
        old = load_spec(data_dir)
        for what, mine, theirs in (
            ("problem", spec.problem, old.problem),
            ("data style", spec.style, old.style),
            ("observation shape", list(spec.obs_shape), list(old.obs_shape)),
            ("observation dtype", spec.obs_dtype, old.obs_dtype),
            ("observation encoding", spec.obs_encoding, old.obs_encoding),
            ("action spec", spec.action, old.action),
        ):
            if mine != theirs:
                raise UserError(
                    f"{data_dir} holds data with {what} {theirs}, this env has {mine}: "
                    "record into another data dir"
                )
        previous = old.epochs.get(str(epoch))
        if previous is not None and previous != args:
            diff = ", ".join(
                f"{k} {previous.get(k)!r} -> {args.get(k)!r}"
                for k in sorted(set(previous) | set(args))
                if previous.get(k) != args.get(k)
            )
            raise UserError(
                f"{data_dir} already holds epoch {epoch} recorded with other arguments ({diff}): "
                "rerun with the original ones to resume, or use another epoch or data dir"
            )
        epochs, env_steps = dict(old.epochs), old.env_steps
    else:
        epochs, env_steps = {}, {}
    epochs[str(epoch)] = args
    spec = dataclasses.replace(spec, epochs=epochs, env_steps=env_steps)
    write_spec(data_dir, spec)
    return spec


def discard_epoch(data_dir: str, epoch: int) -> None:
    """Deletes collection epoch ``epoch`` from ``data_dir``: its shards, their env-step counts
    and its recorded arguments, so it can be recorded afresh. For a recording whose policy
    learned as it recorded, which cannot resume shard by shard after a kill; the discarded
    steps go uncounted, as a killed shard's always have (the redone epoch counts what an
    uninterrupted run's would)."""
    if not tf.io.gfile.exists(join(data_dir, SPEC_FILE)):
        return
    spec = load_spec(data_dir)
    for split_name in SPLITS:
        for path in shard_files(data_dir, split_name, epochs=[epoch], style=spec.style):
            tf.io.gfile.remove(path)
    drop = lambda d: {e: v for e, v in d.items() if e != str(epoch)}
    write_spec(data_dir, dataclasses.replace(spec, epochs=drop(spec.epochs),
                                             env_steps=drop(spec.env_steps)))


def _count_env_steps(data_dir: str, epoch: int, shard: int, env_steps: int) -> None:
    """Records in the spec that writing ``shard`` of ``epoch`` took ``env_steps`` real env steps
    (before its rename, so a resumed recording still knows what its skipped shards cost)."""
    spec = load_spec(data_dir)
    counts = {e: dict(c) for e, c in spec.env_steps.items()}
    counts.setdefault(str(epoch), {})[str(shard)] = int(env_steps)
    write_spec(data_dir, dataclasses.replace(spec, env_steps=counts))


def _make_step_fn(
    env: BatchEnv, policy: Policy, channels: int | None
) -> Callable[[Any, tf.Tensor, tf.Tensor], tuple[Any, tf.Tensor, Any, tf.Tensor, tf.Tensor]]:
    """One ``tf.function`` call per batch step: draw keys, act, step the env. For a
    :class:`FrameStack` of frames with ``channels`` channels the policy sees the stack, the
    returned step (what is recorded) only each observation's newest frame."""

    @tf.function
    def step_fn(state: Any, obs: tf.Tensor, key: tf.Tensor) -> tuple[Any, tf.Tensor, Any, Any]:
        k_act, k_step, key = tf.unstack(split(key, 3))
        action = policy(obs, k_act)
        state, step = env.step(state, action, k_step)
        policy_obs, policy_final = step.obs, step.final_obs
        if channels is not None:
            step = step._replace(obs=step.obs[..., -channels:],
                                 final_obs=step.final_obs[..., -channels:])
        return state, action, step, key, policy_obs, policy_final

    return step_fn


@dataclasses.dataclass
class _ShardRecorder:
    """Generates shards: runs the envs from a shard's key and writes its episodes."""

    data_dir: str
    env: BatchEnv
    channels: int | None  # a FrameStack env: its frames' channels (recorded: the newest)
    step_fn: Callable[..., Any]
    encoder: _EpisodeEncoder
    steps_per_shard: int
    finish_episodes: bool
    reward_clip: tuple[float, float] | None
    max_episode_steps: int
    on_step: StepHook | None
    bar: tqdm.tqdm

    def run(self, shard: int, key: tf.Tensor, path: str) -> tuple[int, int]:
        """Writes global shard ``shard`` to ``path`` (via ``path.tmp``, renamed when complete,
        after the env steps it took are in the spec); returns ``(transitions kept, episodes)``."""
        tmp = path + ".tmp"
        try:
            with tf.io.TFRecordWriter(tmp) as writer:
                kept, episodes, env_steps = self._generate(shard, key, writer)
            _count_env_steps(self.data_dir, self.encoder.epoch_index, shard, env_steps)
            tf.io.gfile.rename(tmp, path, overwrite=True)
        except BaseException:  # Ctrl-C included: leave no temp file behind
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
            raise
        return kept, episodes

    def _generate(
        self, shard: int, key: tf.Tensor, writer: tf.io.TFRecordWriter
    ) -> tuple[int, int, int]:
        env, n, spec = self.env, self.env.num_envs, self.encoder.spec
        limit = self.steps_per_shard
        batch_steps = math.ceil(limit / n)  # finish_episodes=False: a fixed-length rollout
        episode_base = (self.encoder.epoch_index * EPISODE_STRIDE + shard) * EPISODE_STRIDE
        kept_steps = episodes = 0

        def write(ep: _Episode) -> None:
            nonlocal kept_steps, episodes
            if episodes >= EPISODE_STRIDE:
                raise UserError(
                    f"more than {EPISODE_STRIDE} episodes in one shard: lower steps_per_shard"
                )
            for rec in self.encoder.encode(ep, episode_base + episodes):
                writer.write(rec)
            episodes += 1
            before = min(kept_steps, limit)
            kept_steps += ep.steps
            self.bar.update(min(kept_steps, limit) - before)

        reset_key, key = tf.unstack(split(key))
        state, policy_obs = env.reset(reset_key)
        obs_np = _check_obs(env, policy_obs[..., -self.channels:] if self.channels else
                            policy_obs, spec, "reset obs")
        current = [_Episode(obs=[obs_np[i]]) for i in range(n)]
        active = [True] * n  # False: this env's episode began after the cut; ignore the env
        cut = False  # the shard has its steps; finish the running episodes, start no more
        it = 0
        while any(active):
            seen = policy_obs  # what the policy chose from (a FrameStack's stack)
            state, action, step, key, policy_obs, policy_final = self.step_fn(
                state, policy_obs, key)
            it += 1
            action_np = action.numpy()
            unclipped = raw_reward(state, step).numpy()  # the game's score (Atari: unclipped)
            reward = step.reward.numpy()  # the training reward, as the env gives it
            if self.reward_clip is not None:
                reward = np.clip(reward, *self.reward_clip)
            terminated = step.terminated.numpy()
            truncated = step.truncated.numpy()
            next_np = _check_obs(env, step.obs, spec, "step obs")
            final_np = _check_obs(env, step.final_obs, spec, "step final_obs")
            if self.on_step is not None:
                self.on_step(shard, {
                    "obs": obs_np, "action": action_np, "reward": reward,
                    "unclipped_reward": unclipped, "terminated": terminated,
                    "truncated": truncated, "next_obs": next_np, "final_obs": final_np,
                    **({} if self.channels is None else {
                        "policy_obs": seen.numpy(), "policy_next_obs": policy_obs.numpy(),
                        "policy_final_obs": policy_final.numpy()}),
                })
            obs_np = next_np
            for i in range(n):
                if not active[i]:
                    continue
                ep = current[i]
                ep.actions.append(action_np[i])
                ep.obs.append(final_np[i])
                ep.rewards.append(float(reward[i]))
                ep.unclipped.append(float(unclipped[i]))
                if terminated[i] or truncated[i]:
                    ep.terminated = bool(terminated[i])
                    write(ep)
                    if cut:
                        active[i] = False
                    current[i] = _Episode(obs=[next_np[i]])
                elif ep.steps >= self.max_episode_steps:
                    raise UserError(
                        f"env {env.name}: an episode ran past {self.max_episode_steps} steps "
                        "without ending; give the env a time limit or raise max_episode_steps"
                    )
            if not self.finish_episodes and it >= batch_steps:
                for i in range(n):  # cut where they stand: stored as truncated
                    if current[i].steps > 0:
                        write(current[i])
                break
            if not cut and kept_steps >= limit:
                cut = True
                for i in range(n):  # an episode that only just began starts after the cut
                    if current[i].steps == 0:
                        active[i] = False
        return kept_steps, episodes, it * n  # every env steps on every iteration


def _check_obs(env: BatchEnv, obs: tf.Tensor, spec: DataSpec, where: str) -> np.ndarray:
    """``obs`` as numpy, after checking it matches the spec (a wrong env fails in one line)."""
    arr = obs.numpy() if hasattr(obs, "numpy") else np.asarray(obs)
    want = (env.num_envs, *spec.obs_shape)
    if arr.shape != want or arr.dtype.name != spec.obs_dtype:
        raise UserError(
            f"env {env.name}: {where} is {arr.dtype.name}{list(arr.shape)}, observation_spec "
            f"says {spec.obs_dtype}{list(want)}"
        )
    return arr

