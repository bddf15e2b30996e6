"""A t2t usr dir for the bridge tests: t2t's own ``T2TGymEnv`` recording PongNoFrameskip-v4.

gym 0.17's Atari envs need atari-py, which has no build for Python 3.11; ale-py (which ships
the ROMs) stands in for it: ``PongNoFrameskip-v4`` is re-registered as a ``gym.Env`` over
``ale_py.ALEInterface`` with that id's settings (frame skip 1, no sticky actions, minimal action
set, 210x160 RGB). Everything that records -- stepping, PNG encoding, the train/dev split, file
names, fields -- is t2t's ``T2TEnv`` code. ``t2t-datagen --problem=t2t_tiny_pong`` records
``NUM_STEPS`` random steps of one env as epoch 0.
"""

import gym
import numpy as np
from ale_py import ALEInterface, roms
from tensor2tensor.data_generators import gym_env
from tensor2tensor.utils import registry

NUM_STEPS = 300


class AlePong(gym.Env):
    """PongNoFrameskip-v4 in gym 0.17's API, on ale-py."""

    def __init__(self):
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", 0)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(roms.get_rom_path("pong"))
        self.actions = self.ale.getMinimalActionSet()
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)

    def reset(self):
        self.ale.reset_game()
        return self.ale.getScreenRGB()

    def step(self, action):
        reward = self.ale.act(self.actions[int(action)])
        return self.ale.getScreenRGB(), float(reward), self.ale.game_over(), {}


gym.envs.registration.registry.env_specs.pop("PongNoFrameskip-v4", None)
gym.register("PongNoFrameskip-v4", entry_point=AlePong, max_episode_steps=400_000)


@registry.register_problem
class T2tTinyPong(gym_env.T2TGymEnv):
    """t2t's gym problem on Pong (105x80 RGB, t2t's defaults), a few hundred random steps."""

    base_env_name = "PongNoFrameskip-v4"

    def generate_data(self, data_dir, tmp_dir=None, task_id=-1):
        self.start_new_epoch(0)
        self.reset()
        rng = np.random.RandomState(0)
        for _ in range(NUM_STEPS):
            _, _, dones = self.step(rng.randint(self.action_space.n, size=self.batch_size))
            if dones.any():
                self.reset(np.flatnonzero(dones))
        self.reset()  # hands the running rollouts to the epoch, as t2t's collect does
        super().generate_data(data_dir, tmp_dir, task_id)
