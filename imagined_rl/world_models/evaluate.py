"""How good is a world model? 1-step and open-loop k-step error on real held-out trajectories.

From real dev-split episodes, ``open_loop`` starts rollouts at real frame windows, feeds the model
the real actions and its *own* predictions (never the real frames again) for ``horizon`` steps,
and compares with what really happened:

- ``error[k]``: mean squared error of the observation k steps ahead (uint8 frames scaled to
  [0, 1]), beside ``copy_error[k]``, the error of predicting "nothing changes" (the last real
  input frame);
- ``cell_error[k]`` (grid/RGB): the fraction of cells/sub-pixels that differ;
- ``reward_accuracy@N`` (SimPLe's metric): the fraction of rollouts whose predicted rewards match
  the real ones at *every* one of the first N steps (integers: |r̂ - r| < 0.5; real-valued rewards:
  within 10% or 0.1), beside ``majority_reward_accuracy@N``, the same for always predicting the
  most common real reward (0 in most games), the bar a reward model has to clear.

``write_video`` renders real | imagined | difference side by side (GIF via imageio) for frames,
or real-vs-imagined curves (PNG) for vector states.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from imagined_rl import data, plots
from imagined_rl.envs.core import make_key, split
from imagined_rl.errors import UserError
from imagined_rl.world_models.base import WorldModel, observation_kind


def episodes(data_dir: str, split_name: str = "dev") -> list[dict[str, np.ndarray]]:
    """The recorded episodes of a split, in order: ``obs [T+1, ...]``, ``action`` and
    ``reward`` (``reward[t]`` arrives with ``obs[t]``)."""
    eps: dict[int, dict[str, list]] = {}
    for step in data.read_steps(data_dir, split_name).as_numpy_iterator():
        ep = eps.setdefault(int(step["episode"]), {k: [] for k in ("obs", "action", "reward")})
        ep["obs"].append(step["obs"])
        ep["action"].append(step["action"])
        ep["reward"].append(step["reward"])
    return [{k: np.stack(v) for k, v in ep.items()} for ep in eps.values()]


def _starts(eps: list[dict], history: int, horizon: int, max_rollouts: int) -> list[tuple]:
    """Evenly spread (episode, t) pairs with ``history`` real frames up to t and ``horizon``
    real frames after it."""
    starts = [(i, t) for i, ep in enumerate(eps)
              for t in range(history - 1, len(ep["obs"]) - 1 - horizon + 1)]
    if not starts:
        raise UserError(f"no held-out episode is longer than history+horizon={history + horizon}"
                        " steps; record more data or lower --horizon")
    idx = np.linspace(0, len(starts) - 1, min(max_rollouts, len(starts))).round().astype(int)
    return [starts[i] for i in idx]


def _scale(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 and x.max(initial=0) > 1 else (
        x.astype(np.float32))


def open_loop(model: WorldModel, eps: list[dict], horizon: int = 50, max_rollouts: int = 64,
              seed: int = 0) -> dict[str, Any]:
    """Open-loop rollouts of ``model`` against real episodes; see the module docstring."""
    k = model.history
    starts = _starts(eps, k, horizon, max_rollouts)
    inputs = np.stack([eps[i]["obs"][t - k + 1:t + 1] for i, t in starts])
    actions = np.stack([eps[i]["action"][t:t + horizon] for i, t in starts])
    real = np.stack([eps[i]["obs"][t + 1:t + 1 + horizon] for i, t in starts])
    real_r = np.stack([eps[i]["reward"][t + 1:t + 1 + horizon] for i, t in starts])
    predict = tf.function(model.predict)
    frames, rewards = [], []
    window = tf.constant(inputs)
    for h, key in enumerate(tf.unstack(split(make_key(seed), horizon))):
        obs, reward, _ = predict(window, tf.constant(actions[:, h]), key)
        frames.append(obs.numpy())
        rewards.append(reward.numpy())
        window = tf.concat([window[:, 1:], obs[:, None]], axis=1)
    pred = np.stack(frames, axis=1)  # [R, horizon, ...]
    pred_r = np.stack(rewards, axis=1)
    axes = tuple(range(2, pred.ndim))
    err = np.mean((_scale(pred) - _scale(real)) ** 2, axis=axes).mean(axis=0)
    copy = np.repeat(inputs[:, -1:], horizon, axis=1)
    copy_err = np.mean((_scale(copy) - _scale(real)) ** 2, axis=axes).mean(axis=0)
    integer_rewards = np.allclose(real_r, np.round(real_r))
    values, counts = np.unique(real_r, return_counts=True)
    majority = np.full_like(real_r, values[counts.argmax()])

    def matches(pred_r: np.ndarray) -> np.ndarray:
        if integer_rewards:
            return np.abs(pred_r - real_r) < 0.5
        return np.abs(pred_r - real_r) <= np.maximum(0.1, 0.1 * np.abs(real_r))

    match, match_majority = matches(pred_r), matches(majority)
    result: dict[str, Any] = {
        "rollouts": len(starts), "horizon": horizon,
        "error": err.round(8).tolist(), "copy_error": copy_err.round(8).tolist(),
        "one_step_error": float(err[0]), "one_step_copy_error": float(copy_err[0]),
    }
    if observation_kind(model.spec) != "vector":
        result["cell_error"] = np.mean(pred != real, axis=axes).mean(axis=0).round(6).tolist()
    for n in (1, 12, 50):
        if n <= horizon:
            result[f"reward_accuracy@{n}"] = float(np.mean(np.all(match[:, :n], axis=1)))
            result[f"majority_reward_accuracy@{n}"] = float(
                np.mean(np.all(match_majority[:, :n], axis=1)))
    result["_rollout"] = {"real": real[0], "pred": pred[0]}  # for write_video; not JSON
    return result


def write_video(result: dict[str, Any], path_stem: str, fps: int = 8) -> str:
    """Saves the first rollout: a GIF of real | imagined | |difference| for frames, or a PNG of
    real vs imagined state dimensions for vectors. Returns the path written."""
    real, pred = result["_rollout"]["real"], result["_rollout"]["pred"]
    if real.ndim == 2:  # vector states: curves
        path = path_stem + ".png"
        plots.state_panels(path, real, pred)
        return path
    import imageio.v3 as iio

    def rgb(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] == 3 and x.max(initial=0) > 1:
            return x.astype(np.uint8)
        # binary grid channels: each channel its own colour, then upscale 8x
        palette = (np.array(_PALETTE[: x.shape[-1]]) * 255).astype(np.float32)
        img = np.clip(x.astype(np.float32) @ palette, 0, 255).astype(np.uint8)
        return img.repeat(8, axis=-3).repeat(8, axis=-2)

    a, b = rgb(real), rgb(pred)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.uint8)
    gap = np.full((*a.shape[:2], 2, 3), 255, np.uint8)
    frames = np.concatenate([a, gap, b, gap, diff], axis=2)
    path = path_stem + ".gif"
    iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    return path


_PALETTE = [(1, 0.2, 0.2), (0.2, 1, 0.2), (0.3, 0.4, 1), (1, 1, 0.2), (1, 0.3, 1), (0.2, 1, 1),
            (1, 0.6, 0.2), (0.6, 0.3, 1), (0.7, 0.7, 0.7), (0.5, 1, 0.5)]


def plot_errors(result: dict[str, Any], path: str, title: str = "") -> None:
    """Open-loop error against steps ahead, model vs copy-last-frame."""
    steps = list(range(1, result["horizon"] + 1))
    plots.curves(path, {"world model": (steps, result["error"]),
                        "copy last frame": (steps, result["copy_error"])},
                 "steps ahead (open loop)", "mean squared error", title, log_y=True)


def evaluate_model_dir(output_dir: str, data_dir: str | None = None, horizon: int = 50,
                       max_rollouts: int = 64) -> dict[str, Any]:
    """Evaluates the trained model of ``output_dir`` on the dev split of its (or another) data,
    writing ``model_eval.json``, ``open_loop_error.png`` and the rollout video beside it."""
    import json

    from imagined_rl.world_models.trainer import restore_model

    model, config = restore_model(output_dir)
    data_dir = data_dir or config.data_dir
    spec = data.load_spec(data_dir)
    if (spec.obs_shape, spec.obs_dtype, spec.action) != (
            model.spec.obs_shape, model.spec.obs_dtype, model.spec.action):
        raise UserError(f"data in '{data_dir}' ({spec.problem}: obs {list(spec.obs_shape)} "
                        f"{spec.obs_dtype}) do not match the model's ({model.spec.problem}: obs "
                        f"{list(model.spec.obs_shape)} {model.spec.obs_dtype}) or its actions")
    result = open_loop(model, episodes(data_dir, "dev"), horizon, max_rollouts, config.seed)
    result["video"] = write_video(result, os.path.join(output_dir, "open_loop"))
    plot_errors(result, os.path.join(output_dir, "open_loop_error.png"),
                f"{config.model} on {os.path.basename(data_dir)}")
    result.pop("_rollout")
    with open(os.path.join(output_dir, "model_eval.json"), "w") as f:
        json.dump(result, f)
    return result
