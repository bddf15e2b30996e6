"""MinAtar SpaceInvaders: shoot the descending block of aliens (+1 each) from a cannon.

Aliens march sideways and step down at the edges, faster as fewer remain; the one nearest the
cannon fires every 10 steps; a bullet or an alien reaching the cannon ends the episode. A cleared
wave returns, faster with ramping. Channels: cannon, alien, alien_left, alien_right,
friendly_bullet, enemy_bullet. No randomness beyond sticky actions.
"""

from __future__ import annotations

import tensorflow as tf

from imagined_rl.envs.core import State
from imagined_rl.envs.minatar.base import (
    FIRE,
    LEFT,
    NOOP,
    RIGHT,
    SIZE,
    MinAtar,
    at,
    cell,
    full,
    move,
)

SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10
BOTTOM = SIZE - 1


def _wave(n: int) -> tf.Tensor:
    """``[n, 10, 10]`` bool: a fresh wave, rows 0..3 x columns 2..7."""
    rows = tf.range(SIZE)[:, None] < 4
    cols = (tf.range(SIZE)[None] >= 2) & (tf.range(SIZE)[None] < 8)
    return tf.tile((rows & cols)[None], [n, 1, 1])


def _shift_rows(grid: tf.Tensor, by: int) -> tf.Tensor:
    """``np.roll`` by ``by`` rows, then the row that wrapped in cleared (bullets)."""
    rolled = tf.roll(grid, by, axis=1)
    keep = tf.range(SIZE) != (0 if by > 0 else SIZE - 1)
    return rolled & keep[None, :, None]


class SpaceInvaders(MinAtar):
    """MinAtar SpaceInvaders (``MinAtar/SpaceInvaders-v0|v1``); minimal actions: no-op, left,
    right, fire."""

    channels = ("cannon", "alien", "alien_left", "alien_right", "friendly_bullet",
                "enemy_bullet")
    minimal_actions = (NOOP, LEFT, RIGHT, FIRE)

    def reset_game(self, u: tf.Tensor) -> State:
        n = self.num_envs
        empty = tf.zeros([n, SIZE, SIZE], tf.bool)
        return {"pos": full(n, 5), "shots": empty, "bombs": empty, "aliens": _wave(n),
                "dir": full(n, -1), "interval": full(n, ENEMY_MOVE_INTERVAL),
                "move_timer": full(n, ENEMY_MOVE_INTERVAL),
                "alien_shot_timer": full(n, ENEMY_SHOT_INTERVAL),
                "ramp_index": full(n, 0), "shot_timer": full(n, 0)}

    def step_game(self, s: State, a: tf.Tensor, u: tf.Tensor) -> tuple[State, tf.Tensor, tf.Tensor]:
        n, aliens, d = self.num_envs, s["aliens"], s["dir"]
        fire = (a == FIRE) & (s["shot_timer"] == 0)
        pos = s["pos"]
        shots = s["shots"] | (fire[:, None, None] & (cell(full(n, BOTTOM), pos) > 0))
        shot_timer = tf.where(fire, SHOT_COOL_DOWN, s["shot_timer"])
        pos = move(pos, tf.where(a == LEFT, -1, tf.where(a == RIGHT, 1, 0)))
        shots = _shift_rows(shots, -1)
        bombs = _shift_rows(s["bombs"], 1)
        bottom = full(n, BOTTOM)
        terminal = at(bombs, bottom, pos) | at(aliens, bottom, pos)
        # The wave marches: sideways, or down (and about) at an edge.
        moving = s["move_timer"] == 0
        count = tf.reduce_sum(tf.cast(aliens, tf.int32), axis=[1, 2])
        move_timer = tf.where(moving, tf.minimum(count, s["interval"]), s["move_timer"])
        edge = (tf.reduce_any(aliens[:, :, 0], axis=1) & (d < 0)) | (
            tf.reduce_any(aliens[:, :, SIZE - 1], axis=1) & (d > 0))
        down, side = moving & edge, moving & ~edge
        terminal |= down & tf.reduce_any(aliens[:, BOTTOM], axis=1)
        d = tf.where(down, -d, d)
        sideways = tf.where((d > 0)[:, None, None], tf.roll(aliens, 1, axis=2),
                            tf.roll(aliens, -1, axis=2))
        aliens = tf.where(down[:, None, None], tf.roll(aliens, 1, axis=1),
                          tf.where(side[:, None, None], sideways, aliens))
        terminal |= moving & at(aliens, bottom, pos)
        # The alien nearest the cannon (by column, ties to the left; its lowest) drops a bomb.
        shoot = s["alien_shot_timer"] == 0
        alien_shot_timer = tf.where(shoot, ENEMY_SHOT_INTERVAL, s["alien_shot_timer"])
        column = tf.range(SIZE)[None]
        key = tf.abs(column - pos[:, None]) * SIZE + column
        key = tf.where(tf.reduce_any(aliens, axis=1), key, SIZE * SIZE)
        col = tf.argmin(key, axis=1, output_type=tf.int32)
        in_col = tf.gather(tf.transpose(aliens, [0, 2, 1]), col, axis=1, batch_dims=1)
        row = tf.reduce_max(tf.where(in_col, tf.range(SIZE)[None], -1), axis=1)
        bombs = bombs | (shoot[:, None, None] & (cell(row, col) > 0))
        kill = aliens & shots
        reward = tf.reduce_sum(tf.cast(kill, tf.float32), axis=[1, 2])
        aliens, shots = aliens & ~kill, shots & ~kill
        shot_timer -= tf.cast(shot_timer > 0, tf.int32)
        # A cleared wave comes back, faster with ramping.
        cleared = ~tf.reduce_any(aliens, axis=[1, 2])
        ramp = cleared & (s["interval"] > 6) & tf.constant(self.ramping)
        aliens = aliens | (cleared[:, None, None] & _wave(n))
        s = {"pos": pos, "shots": shots, "bombs": bombs, "aliens": aliens, "dir": d,
             "interval": s["interval"] - tf.cast(ramp, tf.int32), "move_timer": move_timer - 1,
             "alien_shot_timer": alien_shot_timer - 1,
             "ramp_index": s["ramp_index"] + tf.cast(ramp, tf.int32), "shot_timer": shot_timer}
        return s, reward, terminal

    def observe(self, s: State) -> tf.Tensor:
        aliens = tf.cast(s["aliens"], tf.float32)
        left = tf.cast(s["dir"] < 0, tf.float32)[:, None, None]
        return tf.stack([cell(full(self.num_envs, BOTTOM), s["pos"]), aliens, aliens * left,
                         aliens * (1 - left), tf.cast(s["shots"], tf.float32),
                         tf.cast(s["bombs"], tf.float32)], axis=-1)
