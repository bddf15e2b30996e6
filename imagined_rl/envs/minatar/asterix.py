"""MinAtar Asterix: dodge enemies and collect gold (+1) that cross the screen in rows 1..8.

Every ``spawn_speed`` steps an enemy or (1 in 3) gold appears at a random free row's edge and
moves every ``move_speed`` steps; touching an enemy ends the episode. With ramping, every 100
steps spawning gets faster (and, on odd ramps, moving). Channels: player, enemy, trail, gold.
Draws per step (the spawn): side, gold, which free row.
"""

from __future__ import annotations

import tensorflow as tf

from imagined_rl.envs.core import State
from imagined_rl.envs.minatar.base import (
    DOWN,
    LEFT,
    NOOP,
    RIGHT,
    SIZE,
    UP,
    MinAtar,
    cell,
    full,
    move,
    randint,
)

SLOTS = 8  # one object per row 1..8
RAMP_INTERVAL = 100
SPAWN_SPEED = 10
MOVE_INTERVAL = 5


class Asterix(MinAtar):
    """MinAtar Asterix (``MinAtar/Asterix-v0|v1``); minimal actions: no-op and the four moves."""

    channels = ("player", "enemy", "trail", "gold")
    minimal_actions = (NOOP, LEFT, UP, RIGHT, DOWN)
    step_draws = 3

    def reset_game(self, u: tf.Tensor) -> State:
        n = self.num_envs
        off = tf.zeros([n, SLOTS], tf.bool)
        return {"x": full(n, 5), "y": full(n, 5), "ex": tf.zeros([n, SLOTS], tf.int32),
                "alive": off, "right": off, "gold": off,
                "spawn_timer": full(n, SPAWN_SPEED), "spawn_speed": full(n, SPAWN_SPEED),
                "move_timer": full(n, MOVE_INTERVAL), "move_speed": full(n, MOVE_INTERVAL),
                "ramp_timer": full(n, RAMP_INTERVAL), "ramp_index": full(n, 0)}

    def step_game(self, s: State, a: tf.Tensor, u: tf.Tensor) -> tuple[State, tf.Tensor, tf.Tensor]:
        s = dict(s)
        alive, ex = s["alive"], s["ex"]
        # Spawn into a random free row (none if every row is taken).
        spawn = s["spawn_timer"] == 0
        right, gold = u[:, 0] < 0.5, u[:, 1] < 1 / 3
        free = ~alive
        pick = randint(u[:, 2], 0, tf.reduce_sum(tf.cast(free, tf.int32), axis=1))
        rank = tf.cumsum(tf.cast(free, tf.int32), axis=1, exclusive=True)
        new = free & (rank == pick[:, None]) & spawn[:, None]
        alive = alive | new
        ex = tf.where(new, tf.where(right, 0, SIZE - 1)[:, None], ex)
        s["right"] = tf.where(new, right[:, None], s["right"])
        s["gold"] = tf.where(new, gold[:, None], s["gold"])
        s["spawn_timer"] = tf.where(spawn, s["spawn_speed"], s["spawn_timer"])
        # The player moves within rows 1..8.
        x = move(s["x"], tf.where(a == LEFT, -1, tf.where(a == RIGHT, 1, 0)))
        y = move(s["y"], tf.where(a == UP, -1, tf.where(a == DOWN, 1, 0)), 1, SIZE - 2)
        row = tf.range(1, SLOTS + 1)[None]

        def touch(alive: tf.Tensor, ex: tf.Tensor):
            hit = alive & (ex == x[:, None]) & (row == y[:, None])
            got = hit & s["gold"]
            return alive & ~got, tf.reduce_sum(tf.cast(got, tf.float32), axis=1), tf.reduce_any(
                hit & ~s["gold"], axis=1)

        alive, reward, terminal = touch(alive, ex)
        moving = s["move_timer"] == 0
        s["move_timer"] = tf.where(moving, s["move_speed"], s["move_timer"])
        ex = tf.where(moving[:, None] & alive, ex + tf.where(s["right"], 1, -1), ex)
        alive = alive & ((ex >= 0) & (ex < SIZE) | ~moving[:, None])
        alive2, reward2, terminal2 = touch(alive & moving[:, None], ex)
        alive = tf.where(moving[:, None], alive2, alive)
        reward = reward + reward2
        terminal = terminal | terminal2
        s["spawn_timer"] -= 1
        s["move_timer"] -= 1
        # Difficulty ramp.
        ramps = tf.constant(self.ramping) & ((s["spawn_speed"] > 1) | (s["move_speed"] > 1))
        wait = ramps & (s["ramp_timer"] >= 0)
        bump = ramps & ~wait
        odd = tf.math.floormod(s["ramp_index"], 2) == 1
        s["move_speed"] -= tf.cast(bump & (s["move_speed"] > 1) & odd, tf.int32)
        s["spawn_speed"] -= tf.cast(bump & (s["spawn_speed"] > 1), tf.int32)
        s["ramp_index"] += tf.cast(bump, tf.int32)
        s["ramp_timer"] = tf.where(bump, RAMP_INTERVAL, s["ramp_timer"] - tf.cast(wait, tf.int32))
        s.update(x=x, y=y, ex=ex, alive=alive)
        return s, reward, terminal

    def observe(self, s: State) -> tf.Tensor:
        def rows(mask: tf.Tensor, x: tf.Tensor) -> tf.Tensor:  # [N, 8] objects -> [N, 10, 10]
            grid = tf.one_hot(x, SIZE) * tf.cast(mask, tf.float32)[..., None]
            return tf.pad(grid, [[0, 0], [1, 1], [0, 0]])

        alive, ex = s["alive"], s["ex"]
        back = ex + tf.where(s["right"], -1, 1)  # one_hot drops cells off the grid
        return tf.stack([cell(s["y"], s["x"]), rows(alive & ~s["gold"], ex), rows(alive, back),
                         rows(alive & s["gold"], ex)], axis=-1)
