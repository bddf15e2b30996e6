"""Runs in the legacy t2t venv: what tensor2tensor's own readers make of a data dir, as .npz.

    python dump.py dataset USR_DIR PROBLEM DATA_DIR SPLIT OUT.npz   # Problem.dataset, decoded
        and preprocessed example by example: what t2t-trainer's input pipeline starts from
    python dump.py t2t_env USR_DIR PROBLEM DATA_DIR SPLIT OUT.npz   # T2TEnv's epoch-0 loader
        (what t2t's SimPLe loop reads its real data with): the rollouts, frame by frame

Both write ``obs``, ``action``, ``reward`` (t2t's reward class, ``r - min_reward``), ``done``
and ``episode`` (a rollout index; ``dataset`` has none and writes ``frame_number`` instead).
"""

import sys

import numpy as np
import tensorflow.compat.v1 as tf
from tensor2tensor.data_generators import problem as problem_lib
from tensor2tensor.utils import hparam, registry, usr_dir


def dataset(p, data_dir, split):
    mode = tf.estimator.ModeKeys.TRAIN if split == "train" else tf.estimator.ModeKeys.EVAL
    hp = hparam.HParams(data_dir=data_dir)
    p.filepattern(data_dir, mode)  # reads the spec for the properties the decoders need
    ds = p.dataset(mode, data_dir=data_dir, shuffle_files=False, preprocess=False, hparams=hp)
    rows = [p.preprocess_example(ex, mode, hp) for ex in ds]
    return {"obs": np.stack([r["frame"].numpy() for r in rows]),
            **{k: np.array([int(r[k].numpy()[0]) for r in rows])
               for k in ("action", "reward", "done", "frame_number")}}


def t2t_env(p, data_dir, split):
    p.start_new_epoch(0, load_data_dir=data_dir)
    key = problem_lib.DatasetSplit.TRAIN if split == "train" else problem_lib.DatasetSplit.EVAL
    frames = [(i, f) for i, rollout in enumerate(p._rollouts_by_epoch_and_split[0][key])
              for f in rollout]
    low = p.reward_range[0]
    return {"obs": np.stack([f.observation.decode() for _, f in frames]),
            "action": np.array([int(f.action) for _, f in frames]),
            "reward": np.array([int(f.reward) - low for _, f in frames]),
            "done": np.array([int(f.done) for _, f in frames]),
            "episode": np.array([i for i, _ in frames])}


if __name__ == "__main__":
    how, usr, name, data_dir, split, out = sys.argv[1:]
    usr_dir.import_usr_dir(usr)
    np.savez(out, **{"dataset": dataset, "t2t_env": t2t_env}[how](
        registry.problem(name), data_dir, split))
