"""MinAtar Seaquest: a submarine shoots fish and enemy subs (+1 each), rescues divers, and must
surface for oxygen.

Surfacing with divers refills oxygen (and, with six, scores the oxygen left); surfacing with none,
running out of oxygen, or touching a fish, sub or bomb ends the episode. Each surfacing with
divers ramps up spawning and speed.

MinAtar keeps its objects in Python lists, visited newest first and matched oldest first; the order
decides who kills whom when several objects share a cell. Here each kind of object lives in a
fixed number of slots with a spawn counter (``seq``) that stands for its place in the list, and
each walk is replayed bullet by bullet (there are at most 4): a bullet, in the order MinAtar
visits it, takes the first free target on its cell in list order. Capacities exceed
anything MinAtar's timers allow (at most ~31 fish and subs at full difficulty).
Channels: sub_front, sub_back, friendly_bullet, trail, enemy_bullet, enemy_fish, enemy_sub,
oxygen_guage, diver_guage, diver. Draws per step: enemy side, enemy kind, enemy row, diver side,
diver row.
"""

from __future__ import annotations

import tensorflow as tf

from imagined_rl.envs.core import State
from imagined_rl.envs.minatar.base import (
    DOWN,
    FIRE,
    LEFT,
    RIGHT,
    SIZE,
    UP,
    MinAtar,
    cell,
    cells,
    full,
    move,
    randint,
)

MAX_OXYGEN = 200
SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5
SLOTS = {"shots": 4, "bombs": 32, "fish": 32, "subs": 32, "divers": 4}  # bombs: one per sub
FIELDS = {"shots": ("x", "y", "right", "seq"), "bombs": ("x", "y", "right"),
          "fish": ("x", "y", "right", "timer", "seq"),
          "subs": ("x", "y", "right", "timer", "shot", "seq"),
          "divers": ("x", "y", "right", "timer", "seq")}
Group = dict[str, tf.Tensor]  # "alive" and FIELDS, each [N, slots]


def _append(g: Group, add: tf.Tensor, **values: tf.Tensor) -> Group:
    """``g`` with new objects appended where ``add`` ([N, K]: K candidates per env, each given
    ``values`` [N, K]); the k-th added takes the k-th free slot (none left: dropped)."""
    free = ~g["alive"]
    taken = tf.cumsum(tf.cast(add, tf.int32), axis=1, exclusive=True)
    slot = tf.cumsum(tf.cast(free, tf.int32), axis=1, exclusive=True)
    put = add[:, :, None] & free[:, None, :] & (taken[:, :, None] == slot[:, None, :])  # [N,K,S]
    into = tf.reduce_any(put, axis=1)
    out = {"alive": g["alive"] | into}
    for name, old in g.items():
        if name != "alive":
            value = tf.cast(values[name], tf.int32)[:, :, None]
            new = tf.reduce_sum(tf.where(put, value, 0), axis=1)
            out[name] = tf.where(into, tf.cast(new, old.dtype), old)
    return out


def _one(v: tf.Tensor) -> tf.Tensor:
    return tf.cast(v, tf.int32)[:, None]


def _match(shots: Group, newest_first: bool, *targets: tuple[Group, tf.Tensor, bool],
           ) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """MinAtar's list walks of bullets against targets, one bullet at a time.

    Bullets are visited in spawn order (newest first if ``newest_first``); each takes the first
    free target on its cell, trying the groups in ``targets`` in turn, each given as (group,
    which of its objects may be hit [N, K], whether the group is walked newest first). Returns
    the bullets used [N, B] and, per group, the objects hit [N, K]. (MinAtar's target-major
    walks, targets newest first each taking the oldest bullet, pair the same objects.)
    """
    order = tf.argsort(-shots["seq"] if newest_first else shots["seq"], axis=1, stable=True)
    free = [tf.identity(ok) for _, ok, _ in targets]
    used = tf.zeros_like(shots["alive"])
    big = tf.int32.max
    for j in range(shots["alive"].shape[1]):
        b = order[:, j:j + 1]
        live = tf.gather(shots["alive"], b, batch_dims=1)
        bx, by = tf.gather(shots["x"], b, batch_dims=1), tf.gather(shots["y"], b, batch_dims=1)
        taken = ~live[:, 0]  # this bullet has hit something (or is not there)
        for i, (g, _, newest) in enumerate(targets):
            here = free[i] & (g["x"] == bx) & (g["y"] == by) & ~taken[:, None]
            rank = tf.where(here, -g["seq"] if newest else g["seq"], big)
            pick = (tf.one_hot(tf.argmin(rank, axis=1), rank.shape[1]) > 0) & here
            hit = tf.reduce_any(here, axis=1)
            free[i] &= ~pick
            used |= (tf.one_hot(b[:, 0], used.shape[1]) > 0) & hit[:, None]
            taken |= hit
    return used, [ok & ~f for (_, ok, _), f in zip(targets, free)]


def _step_x(g: Group, where: tf.Tensor) -> tf.Tensor:
    return tf.where(where, g["x"] + tf.where(g["right"], 1, -1), g["x"])


def _count(mask: tf.Tensor, axis: int | list[int]) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=axis)


class Seaquest(MinAtar):
    """MinAtar Seaquest (``MinAtar/Seaquest-v0|v1``); all six actions are minimal."""

    channels = ("sub_front", "sub_back", "friendly_bullet", "trail", "enemy_bullet",
                "enemy_fish", "enemy_sub", "oxygen_guage", "diver_guage", "diver")
    minimal_actions = tuple(range(6))
    step_draws = 5

    def reset_game(self, u: tf.Tensor) -> State:
        n = self.num_envs
        groups = {
            g: {"alive": tf.zeros([n, k], tf.bool),
                **{f: tf.zeros([n, k], tf.bool if f == "right" else tf.int32)
                   for f in FIELDS[g]}}
            for g, k in SLOTS.items()}
        return {**groups, "oxygen": full(n, MAX_OXYGEN), "held": full(n, 0), "x": full(n, 5),
                "y": full(n, 0), "right": tf.zeros([n], tf.bool),
                "spawn_speed": full(n, SPAWN_SPEED), "spawn_timer": full(n, SPAWN_SPEED),
                "diver_timer": full(n, DIVER_SPAWN_SPEED), "move_speed": full(n, MOVE_INTERVAL),
                "ramp_index": full(n, 0), "shot_timer": full(n, 0),
                "surface": tf.ones([n], tf.bool), "seq": full(n, 0)}

    def step_game(self, s: State, a: tf.Tensor, u: tf.Tensor) -> tuple[State, tf.Tensor, tf.Tensor]:
        s = dict(s)
        fish, subs, divers, shots, bombs = (s[g] for g in ("fish", "subs", "divers", "shots",
                                                           "bombs"))
        seq = s["seq"]
        # Spawns: an enemy (unless its row has one heading the other way), then a diver.
        spawn = s["spawn_timer"] == 0
        right, is_sub, row = u[:, 0] < 0.5, u[:, 1] < 1 / 3, randint(u[:, 2], 1, 9)
        blocked = tf.zeros_like(spawn)
        for g in (subs, fish):
            blocked |= tf.reduce_any(g["alive"] & (g["y"] == row[:, None])
                                     & (g["right"] != right[:, None]), axis=1)
        add = spawn & ~blocked
        start = tf.where(right, 0, SIZE - 1)
        enemy = {"x": _one(start), "y": _one(row), "right": right[:, None],
                 "timer": _one(s["move_speed"]), "seq": _one(seq)}
        subs = _append(subs, (add & is_sub)[:, None], shot=_one(full(self.num_envs,
                                                                     ENEMY_SHOT_INTERVAL)), **enemy)
        fish = _append(fish, (add & ~is_sub)[:, None], **enemy)
        seq += tf.cast(add, tf.int32)
        s["spawn_timer"] = tf.where(spawn, s["spawn_speed"], s["spawn_timer"])
        dive = s["diver_timer"] == 0
        d_right = u[:, 3] < 0.5
        divers = _append(divers, dive[:, None], x=_one(tf.where(d_right, 0, SIZE - 1)),
                         y=_one(randint(u[:, 4], 1, 9)), right=d_right[:, None],
                         timer=_one(full(self.num_envs, DIVER_MOVE_INTERVAL)), seq=_one(seq))
        seq += tf.cast(dive, tf.int32)
        s["diver_timer"] = tf.where(dive, DIVER_SPAWN_SPEED, s["diver_timer"])
        # The player: fire (when cooled down), or move and turn.
        x, y, facing = s["x"], s["y"], s["right"]
        fire = (a == FIRE) & (s["shot_timer"] == 0)
        shots = _append(shots, fire[:, None], x=_one(x), y=_one(y), right=facing[:, None],
                        seq=_one(seq))
        seq += tf.cast(fire, tf.int32)
        shot_timer = tf.where(fire, SHOT_COOL_DOWN, s["shot_timer"])
        x = move(x, tf.where(a == LEFT, -1, tf.where(a == RIGHT, 1, 0)))
        facing = tf.where(a == LEFT, False, tf.where(a == RIGHT, True, facing))
        y = move(y, tf.where(a == UP, -1, tf.where(a == DOWN, 1, 0)), 0, SIZE - 2)
        reward = tf.zeros([self.num_envs], tf.int32)
        terminal = tf.zeros([self.num_envs], tf.bool)

        def on_sub(g: Group) -> tf.Tensor:
            return g["alive"] & (g["x"] == x[:, None]) & (g["y"] == y[:, None])

        def inside(v: tf.Tensor) -> tf.Tensor:
            return (v >= 0) & (v < SIZE)

        # Friendly bullets fly; each hits the oldest fish on its cell, else the oldest sub.
        shots = dict(shots, x=_step_x(shots, shots["alive"]))
        shots["alive"] &= inside(shots["x"])
        used, (shot_fish, shot_subs) = _match(shots, True, (fish, fish["alive"], False),
                                              (subs, subs["alive"], False))
        reward += _count(used, 1)
        shots["alive"] &= ~used
        fish = dict(fish, alive=fish["alive"] & ~shot_fish)
        subs = dict(subs, alive=subs["alive"] & ~shot_subs)
        # Divers swim; touching the sub rescues them (newest first, while fewer than 6 held).
        steps = divers["alive"] & (divers["timer"] == 0)
        moved = _step_x(divers, steps)
        grab = on_sub(divers) | steps & inside(moved) & on_sub(dict(divers, x=moved))
        ahead = divers["seq"][:, None, :] > divers["seq"][:, :, None]
        before = _count(grab[:, None, :] & ahead, 2)
        got = grab & (s["held"][:, None] + before < 6)
        held = s["held"] + _count(got, 1)
        divers = dict(divers, x=moved,  # every diver not rescued moves on
                      timer=tf.where(steps, DIVER_MOVE_INTERVAL, divers["timer"] - 1))
        divers["alive"] &= ~got & inside(divers["x"])

        # Enemies (subs, then fish) swim, newest first; each is shot by the oldest bullet on
        # the cell it enters; touching the player ends the episode.
        def swim(g: Group) -> tuple[Group, tf.Tensor, tf.Tensor, tf.Tensor, Group]:
            steps = g["alive"] & (g["timer"] == 0)
            hit = on_sub(g)
            g = dict(g, x=_step_x(g, steps), timer=tf.where(steps, s["move_speed"][:, None],
                                                              g["timer"] - 1))
            out = steps & ~inside(g["x"])
            hit |= steps & ~out & on_sub(g)
            used, (dead,) = _match(shots, False, (g, steps & ~out & ~on_sub(g), True))
            left = dict(shots, alive=shots["alive"] & ~used)
            alive_before = g["alive"]
            g["alive"] = g["alive"] & ~out & ~dead
            return g, _count(dead, 1), tf.reduce_any(hit, 1), alive_before, left

        subs, got_subs, hit_subs, swam, shots = swim(subs)
        fires = swam & (subs["shot"] == 0) & inside(subs["x"])
        subs["shot"] = tf.where(swam & (subs["shot"] == 0), ENEMY_SHOT_INTERVAL, subs["shot"] - 1)
        # A sub fires every 11 steps and a bomb leaves the grid within 10, so each sub slot
        # needs one bomb slot: sub i's bomb lives in bomb slot i.
        bombs = {"alive": bombs["alive"] | fires,
                 **{f: tf.where(fires, subs[f], bombs[f]) for f in ("x", "y", "right")}}
        # Enemy bullets fly.
        hit_bombs = tf.reduce_any(on_sub(bombs), 1)
        bombs = dict(bombs, x=_step_x(bombs, bombs["alive"]))
        bombs["alive"] &= inside(bombs["x"])
        hit_bombs |= tf.reduce_any(on_sub(bombs), 1)
        fish, got_fish, hit_fish, _, shots = swim(fish)
        reward += got_subs + got_fish
        terminal |= hit_subs | hit_bombs | hit_fish
        # Timers, oxygen and surfacing.
        s["spawn_timer"] -= tf.cast(s["spawn_timer"] > 0, tf.int32)
        s["diver_timer"] -= tf.cast(s["diver_timer"] > 0, tf.int32)
        shot_timer -= tf.cast(shot_timer > 0, tf.int32)
        oxygen = s["oxygen"]
        terminal |= oxygen <= 0
        below = y > 0
        oxygen = tf.where(below, oxygen - 1, oxygen)
        surfacing = ~below & ~s["surface"]
        terminal |= surfacing & (held == 0)
        land = surfacing & (held != 0)
        six = land & (held == 6)
        reward += tf.where(six, oxygen * 10 // MAX_OXYGEN, 0)
        held = tf.where(six, 0, held) - tf.cast(land, tf.int32)  # as MinAtar: six leave -1
        oxygen = tf.where(land, MAX_OXYGEN, oxygen)
        surface = tf.where(below, False, land | s["surface"])
        speed, spawn_speed, ramp = s["move_speed"], s["spawn_speed"], s["ramp_index"]
        ramps = land & tf.constant(self.ramping) & ((spawn_speed > 1) | (speed > 2))
        odd = tf.math.floormod(ramp, 2) == 1
        s["move_speed"] = speed - tf.cast(ramps & (speed > 2) & odd, tf.int32)
        s["spawn_speed"] = spawn_speed - tf.cast(ramps & (spawn_speed > 1), tf.int32)
        s["ramp_index"] = ramp + tf.cast(ramps, tf.int32)
        s.update(fish=fish, subs=subs, divers=divers, shots=shots, bombs=bombs, seq=seq, x=x, y=y,
                 right=facing, shot_timer=shot_timer, oxygen=oxygen, held=held, surface=surface)
        return s, tf.cast(reward, tf.float32), terminal

    def observe(self, s: State) -> tf.Tensor:
        def objects(g: Group) -> tf.Tensor:
            return cells(g["y"], g["x"], g["alive"])

        def trail(g: Group) -> tf.Tensor:
            return cells(g["y"], g["x"] + tf.where(g["right"], -1, 1), g["alive"])

        n, col = self.num_envs, tf.range(SIZE)[None]
        back = s["x"] + tf.where(s["right"], -1, 1)
        gauge_row = tf.one_hot(full(n, SIZE - 1), SIZE)[:, :, None]  # [N, 10, 1]

        def gauge(mask: tf.Tensor) -> tf.Tensor:  # [N, 10] columns of row 9
            return gauge_row * tf.cast(mask, tf.float32)[:, None, :]

        oxygen = gauge(col < (tf.maximum(s["oxygen"], 0) * 10 // MAX_OXYGEN)[:, None])
        held = gauge((col >= SIZE - 1 - s["held"][:, None]) & (col < SIZE - 1))
        trails = tf.maximum(tf.maximum(trail(s["fish"]), trail(s["subs"])), trail(s["divers"]))
        return tf.stack([cell(s["y"], s["x"]), cell(s["y"], back), objects(s["shots"]), trails,
                         objects(s["bombs"]), objects(s["fish"]), objects(s["subs"]), oxygen,
                         held, objects(s["divers"])], axis=-1)
