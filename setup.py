"""imagined_rl: a world model and a PPO agent in one TensorFlow graph."""

from setuptools import setup

INSTALL = [
    "tensorflow-cpu==2.21.0; platform_machine!='arm64'",
    "tensorflow==2.21.0; platform_machine=='arm64'",
    "numpy>=2.0,<2.5",
    "gymnasium==1.4.0",
    "absl-py==2.5.1",
    "tensorboard==2.21.0",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "imageio==2.38.1",
]

ATARI = ["ale-py==0.12.1", "opencv-python-headless==5.0.0.93"]  # cv2: AtariPreprocessing
MINATAR = ["minatar==1.0.15"]
EXTRAS = {
    "atari": ATARI,
    "minatar": MINATAR,
    # The tests cover the Atari and MinAtar adapters too, so [dev] brings both.
    "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "ruff==0.17.5", *ATARI, *MINATAR],
    "bench": ["torch==2.13.0", "stable-baselines3==2.9.2"],
}

setup(
    name="imagined_rl",
    version="0.1.0",
    description="World models and PPO together inside one TensorFlow graph (SimPLe, modernised).",
    python_requires=">=3.10",
    packages=["imagined_rl", "imagined_rl.data", "imagined_rl.envs", "imagined_rl.world_models",
              "imagined_rl.problems", "imagined_rl.hparams"],
    package_dir={
        "imagined_rl": "imagined_rl",
        "imagined_rl.problems": "problems",
        "imagined_rl.hparams": "hparams",
    },
    install_requires=INSTALL,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["imagined-rl=imagined_rl.cli:run"]},
)
