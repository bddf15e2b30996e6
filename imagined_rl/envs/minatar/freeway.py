"""MinAtar Freeway: walk a chicken across eight lanes of traffic (+1 per crossing).

The chicken moves at most every 3 steps; a car hitting it sends it back to the bottom; each
crossing re-draws every lane's speed (1..5) and direction. The episode ends after 2,500 steps.
Channels: chicken, car, and one trail channel per car speed (speed1..speed5).
Draws (a reset, and a step that ends a crossing): 8 speeds, then 8 directions.
"""

from __future__ import annotations

import tensorflow as tf

from imagined_rl.envs.core import State
from imagined_rl.envs.minatar.base import DOWN, NOOP, SIZE, UP, MinAtar, cell, full, move, randint

LANES = 8  # cars in rows 1..8
PLAYER_SPEED = 3
TIME_LIMIT = 2500
CHICKEN_X = 4


def _speeds(u: tf.Tensor) -> tf.Tensor:
    """``[N, 8]`` signed speeds: ``randint(1, 6, 8) * sign(rand(8) - 0.5)``."""
    return randint(u[:, :LANES], 1, 6) * tf.cast(tf.sign(u[:, LANES:] - 0.5), tf.int32)


class Freeway(MinAtar):
    """MinAtar Freeway (``MinAtar/Freeway-v0|v1``); minimal actions: no-op, up, down."""

    channels = ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5")
    minimal_actions = (NOOP, UP, DOWN)
    reset_draws = 2 * LANES
    step_draws = 2 * LANES

    def reset_game(self, u: tf.Tensor) -> State:
        n, speed = self.num_envs, _speeds(u)
        return {"pos": full(n, SIZE - 1), "move_timer": full(n, PLAYER_SPEED),
                "time_left": full(n, TIME_LIMIT), "car_x": tf.zeros([n, LANES], tf.int32),
                "car_timer": tf.abs(speed), "car_speed": speed}

    def step_game(self, s: State, a: tf.Tensor, u: tf.Tensor) -> tuple[State, tf.Tensor, tf.Tensor]:
        ready = s["move_timer"] == 0
        up, down = (a == UP) & ready, (a == DOWN) & ready
        move_timer = tf.where(up | down, PLAYER_SPEED, s["move_timer"])
        pos = move(s["pos"], tf.where(up, -1, tf.where(down, 1, 0)))
        win = pos == 0  # crossed: new lane speeds, back to the bottom
        speed = tf.where(win[:, None], _speeds(u), s["car_speed"])
        timer = tf.where(win[:, None], tf.abs(speed), s["car_timer"])
        pos = tf.where(win, SIZE - 1, pos)
        lane = tf.range(1, LANES + 1)[None]
        x = s["car_x"]
        hit = (x == CHICKEN_X) & (lane == pos[:, None])
        moving = timer == 0
        timer = tf.where(moving, tf.abs(speed), timer - 1)
        x = tf.where(moving, tf.math.floormod(x + tf.where(speed > 0, 1, -1), SIZE), x)
        hit = hit | moving & (x == CHICKEN_X) & (lane == pos[:, None])
        # A hit sends the chicken to row 9, where no car can hit it again this step.
        pos = tf.where(tf.reduce_any(hit, axis=1), SIZE - 1, pos)
        move_timer = move_timer - tf.cast(move_timer > 0, tf.int32)
        time_left = s["time_left"] - 1
        s = {"pos": pos, "move_timer": move_timer, "time_left": time_left, "car_x": x,
             "car_timer": timer, "car_speed": speed}
        return s, tf.cast(win, tf.float32), time_left < 0

    def observe(self, s: State) -> tf.Tensor:
        x, speed = s["car_x"], s["car_speed"]
        back = tf.math.floormod(x + tf.where(speed > 0, -1, 1), SIZE)
        level = tf.one_hot(tf.abs(speed) - 1, 5)  # [N, 8, 5]: which trail channel
        trails = level[:, :, None, :] * tf.one_hot(back, SIZE)[..., None]  # [N, 8, 10, 5]
        trails = tf.pad(trails, [[0, 0], [1, 1], [0, 0], [0, 0]])
        cars = tf.pad(tf.one_hot(x, SIZE), [[0, 0], [1, 1], [0, 0]])
        chicken = cell(s["pos"], full(self.num_envs, CHICKEN_X))
        return tf.concat([chicken[..., None], cars[..., None], trails], axis=-1)
