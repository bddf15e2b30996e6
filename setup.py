"""imagined_rl: a world model and a PPO agent in one TensorFlow graph."""

from setuptools import setup

# TensorFlow is not in INSTALL: pick its build with an extra -- [cpu], [gpu] (CUDA) or [tpu]
# (TPU VMs, Colab TPU runtimes; tensorflow-tpu's newest release is 2.20). The code runs on TF
# 2.21 (CI) and is written to run on 2.20 too.
INSTALL = [
    "numpy>=2.0,<2.5",
    "gymnasium==1.4.0",
    "absl-py==2.5.1",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "imageio==2.38.1",
]
# tensorboard: the viewer, and what tf.summary's scalar/image ops come from. TF 2.21 no longer
# depends on it (so it is pinned here); TF 2.20 requires tensorboard~=2.20.
TENSORFLOW = {
    "cpu": ["tensorflow-cpu==2.21.0; platform_machine!='arm64'",
            "tensorflow==2.21.0; platform_machine=='arm64'", "tensorboard==2.21.0"],
    "gpu": ["tensorflow[and-cuda]==2.21.0", "tensorboard==2.21.0"],
    # with pip's -f https://storage.googleapis.com/libtpu-tf-releases/index.html for its libtpu
    "tpu": ["tensorflow-tpu==2.20.0", "tensorboard==2.20.0"],
}

ATARI = ["ale-py==0.12.1", "opencv-python-headless==5.0.0.93"]  # cv2: AtariPreprocessing
MINATAR = ["minatar==1.0.15"]
NOTEBOOKS = ["nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"]  # tests run notebooks
EXTRAS = {
    **TENSORFLOW,
    "atari": ATARI,
    "minatar": MINATAR,
    # The tests cover the Atari and MinAtar adapters too, so [dev] brings both (and no
    # TensorFlow: install [cpu,dev]).
    "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0", "ruff==0.17.5",
            *ATARI, *MINATAR, *NOTEBOOKS],
    "bench": ["torch==2.13.0", "stable-baselines3==2.9.2"],
}

setup(
    name="imagined_rl",
    version="0.1.0",
    description="World models and PPO together inside one TensorFlow graph (SimPLe, modernised).",
    python_requires=">=3.10",
    packages=["imagined_rl", "imagined_rl.data", "imagined_rl.envs", "imagined_rl.envs.minatar",
              "imagined_rl.world_models", "imagined_rl.t2t_usr", "imagined_rl.problems",
              "imagined_rl.hparams"],
    package_data={"imagined_rl.t2t_usr": ["atari_games.txt"]},
    package_dir={
        "imagined_rl": "imagined_rl",
        "imagined_rl.problems": "problems",
        "imagined_rl.hparams": "hparams",
    },
    install_requires=INSTALL,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["imagined-rl=imagined_rl.cli:run"]},
)
