"""SimPLe from pixels at CPU scale: the loop on Freeway and Pong at ~100k real steps, against
model-free PPO with the same conv policy on the same real steps, and a random policy.

    python bench/simple_atari.py                      # Freeway and Pong, 1 seed, rlmb_cpu_atari
    python bench/simple_atari.py --games=pong --seeds=3

Small models (``rlmb_cpu_atari``: 26x20 frames, ``next_frame_tiny``, 20 PPO iterations per
epoch; see its docstring); the paper's sizes are for a GPU (``bench/gpu/simple_atari.sh``).
Each game runs ``bench/simple_vs_model_free.py`` (the loop, then model-free PPO on exactly the
real steps each epoch had used, every policy scored by the loop's own evaluation: mean raw game
score) and writes ``results/simple_atari_<game>.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import app, flags

flags.DEFINE_list("games", ["freeway", "pong"], "ALE games (problems gym_<game>_random)")
flags.DEFINE_integer("seeds", 1, "seeds 0..N-1")
flags.DEFINE_string("loop_hparams_set", "rlmb_cpu_atari", "SimPLe loop set")
FLAGS = flags.FLAGS


def main(_: list[str]) -> None:
    script = os.path.join(os.path.dirname(__file__), "simple_vs_model_free.py")
    for game in FLAGS.games:
        subprocess.run([sys.executable, script, f"--loop_hparams_set={FLAGS.loop_hparams_set}",
                        f"--loop_hparams=problem=gym_{game}_random", f"--seeds={FLAGS.seeds}",
                        f"--out_name=simple_atari_{game}"], check=True)


if __name__ == "__main__":
    app.run(main)
