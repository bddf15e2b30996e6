"""SimPLe from pixels at CPU scale: the loop on Atari Freeway and Pong at <= 25k/50k/100k real
env steps vs model-free PPO (``ppo_simple_atari``'s CNN) on the same steps vs random, mean raw
game score -- ``bench/sample_efficiency.py`` with its Atari defaults (``rlmb_cpu_atari``:
26x20 frames, ``next_frame_tiny``; ~2 h per game and seed on 2 cores).

    python bench/simple_atari.py                          # Freeway and Pong, seed 0
    python bench/simple_atari.py --envs=atari_pong --seeds=3
    python bench/simple_atari.py --atari_loop_hparams_set=rlmb_base_stochastic_discrete \
        --out_name=simple_atari_gpu                       # the paper's sizes (bench/gpu/)

Every flag of ``bench/sample_efficiency.py`` applies; results go to
``results/simple_atari.{jsonl,md}`` and one PNG per game.
"""

from __future__ import annotations

import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(__file__))
import sample_efficiency  # bench/sample_efficiency.py

DEFAULTS = {"envs": ["atari_freeway", "atari_pong"], "seeds": 1, "long_budgets": [],
            "out_name": "simple_atari"}

if __name__ == "__main__":
    for name, value in DEFAULTS.items():
        sample_efficiency.FLAGS.set_default(name, value)
    app.run(sample_efficiency.main)
