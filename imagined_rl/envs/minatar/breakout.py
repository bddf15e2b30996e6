"""MinAtar Breakout: bounce a ball off a paddle to break three rows of bricks (+1 per brick).

The ball moves on diagonals; walls and bricks reflect it; the paddle sends it back left or right
depending on where it lands; missing it ends the episode; a cleared wall is rebuilt when the ball
next reaches the bottom row. Channels: paddle, ball, trail (the ball's last cell), brick.
Draws: a reset takes one uniform (which top corner the ball starts from); a step none.
"""

from __future__ import annotations

import tensorflow as tf

from imagined_rl.envs.core import State
from imagined_rl.envs.minatar.base import LEFT, NOOP, RIGHT, SIZE, MinAtar, at, cell, full, move

DX = (-1, 1, 1, -1)  # ball directions 0..3: up-left, up-right, down-right, down-left
DY = (-1, -1, 1, 1)
FLIP_X = (1, 0, 3, 2)  # off a side wall
FLIP_Y = (3, 2, 1, 0)  # off the top, a brick, or the paddle's near edge
FLIP_XY = (2, 3, 0, 1)  # off the paddle's far edge
BRICK_ROWS = (1, 2, 3)


def _rows(n: int) -> tf.Tensor:
    """``[n, 10, 10]`` bool: the three full rows of bricks."""
    rows = tf.reduce_any(tf.one_hot(BRICK_ROWS, SIZE) > 0, axis=0)
    return tf.tile(tf.broadcast_to(rows[:, None], [SIZE, SIZE])[None], [n, 1, 1])


def _turn(table: tuple[int, ...], d: tf.Tensor, where: tf.Tensor) -> tf.Tensor:
    return tf.where(where, tf.gather(tf.constant(table), d), d)


class Breakout(MinAtar):
    """MinAtar Breakout (``MinAtar/Breakout-v0|v1``); minimal actions: no-op, left, right."""

    channels = ("paddle", "ball", "trail", "brick")
    minimal_actions = (NOOP, LEFT, RIGHT)
    reset_draws = 1

    def reset_game(self, u: tf.Tensor) -> State:
        n = self.num_envs
        right = u[:, 0] >= 0.5  # randint(2) == 1: start at the right, heading down-left
        x = tf.where(right, 9, 0)
        y = full(n, 3)
        return {"ball_x": x, "ball_y": y, "dir": tf.where(right, 3, 2), "pos": full(n, 4),
                "bricks": _rows(n), "strike": tf.zeros([n], tf.bool), "last_x": x, "last_y": y}

    def step_game(self, s: State, a: tf.Tensor, u: tf.Tensor) -> tuple[State, tf.Tensor, tf.Tensor]:
        pos = move(s["pos"], tf.where(a == LEFT, -1, tf.where(a == RIGHT, 1, 0)))
        bx, by, d, bricks = s["ball_x"], s["ball_y"], s["dir"], s["bricks"]
        nx, ny = bx + tf.gather(tf.constant(DX), d), by + tf.gather(tf.constant(DY), d)
        d = _turn(FLIP_X, d, (nx < 0) | (nx > SIZE - 1))
        nx = tf.clip_by_value(nx, 0, SIZE - 1)
        top = ny < 0
        brick = ~top & at(bricks, ny, nx)
        strike = brick & ~s["strike"]  # a brick breaks once per contact
        bottom = ~top & ~brick & (ny == SIZE - 1)
        d = _turn(FLIP_Y, d, top | strike)
        bricks = bricks & ~(strike[:, None, None] & (cell(ny, nx) > 0))
        refill = bottom & ~tf.reduce_any(bricks, axis=[1, 2])
        bricks = bricks | (refill[:, None, None] & _rows(self.num_envs))
        near = bottom & (bx == pos)
        far = bottom & ~near & (nx == pos)
        d = _turn(FLIP_XY, _turn(FLIP_Y, d, near), far)
        ny = tf.where(top, 0, tf.where(strike | near | far, by, ny))
        terminal = bottom & ~near & ~far
        s = {"ball_x": nx, "ball_y": ny, "dir": d, "pos": pos, "bricks": bricks,
             "strike": brick, "last_x": bx, "last_y": by}
        return s, tf.cast(strike, tf.float32), terminal

    def observe(self, s: State) -> tf.Tensor:
        return tf.stack([cell(full(self.num_envs, SIZE - 1), s["pos"]),
                         cell(s["ball_y"], s["ball_x"]), cell(s["last_y"], s["last_x"]),
                         tf.cast(s["bricks"], tf.float32)], axis=-1)
