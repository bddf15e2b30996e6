"""Deliberately broken custom envs: the CLI must name what is wrong in one line."""

from __future__ import annotations

from imagined_rl.envs.classic import CartPole


class WrongObsShape(CartPole):
    """Observations lose a dimension on reset."""

    def reset_env(self, key):
        state, obs = super().reset_env(key)
        return state, obs[:, :3]


class PythonState(CartPole):
    """Keeps a Python int in its state, which cannot flow through tf.while_loop."""

    def reset(self, key):
        state, obs = super().reset(key)
        return {"inner": state, "episodes": 0}, obs

    def step(self, state, action, key):
        inner, step = super().step(state["inner"], action, key)
        return {"inner": inner, "episodes": state["episodes"] + 1}, step
