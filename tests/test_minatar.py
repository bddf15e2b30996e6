"""The native MinAtar games against the ``minatar`` package, transition by transition.

Both implementations get the very same random draws: our env's ``uniforms`` is replaced by a
queue of preset uniforms, and each reference env's numpy RandomState by :class:`Draws`, which
serves those uniforms to whichever MinAtar function asks (sticky actions, spawns, car speeds).
64 envs of each game then run in lockstep on random actions for 160 steps (10,240 transitions,
many episodes, auto-reset included); observation, reward and termination must be equal.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf
from minatar import Environment

from imagined_rl import registry
from imagined_rl.envs import check_env, make_key
from imagined_rl.envs.minatar import GAMES, env_id

N, T = 64, 160
DIVER_OFFSET = 3  # Seaquest: an enemy spawn takes draws 0..2, a diver spawn 3..4


class Draws:
    """Stands in for ``np.random.RandomState`` in minatar, serving preset uniforms."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}
        self.used: dict[str, int] = {}
        self.phase = "step"

    def feed(self, **rows: np.ndarray) -> None:
        self.rows, self.used = rows, {}

    def _take(self, size: int | None) -> np.ndarray:
        caller = sys._getframe(2).f_code.co_name
        row = "sticky" if caller == "act" else self.phase
        start = self.used.get(caller, 0) + (DIVER_OFFSET if caller == "_spawn_diver" else 0)
        k = 1 if size is None else size
        self.used[caller] = self.used.get(caller, 0) + k
        return self.rows[row][start:start + k]

    def rand(self, size: int | None = None):
        u = self._take(size).astype(np.float64)
        return float(u[0]) if size is None else u

    def randint(self, low: int, high: int | None = None, size: int | None = None):
        if high is None:
            low, high = 0, low
        u = self._take(size)
        v = low + np.floor(u * np.float32(high - low)).astype(np.int64)  # float32, as in TF
        return int(v[0]) if size is None else v


class Inject:
    """Our env's ``uniforms``: preset arrays, handed out in the order the env asks for them.

    ``reset`` takes one array; a compiled ``step`` reads three variables (sticky, step, reset
    draws, the order ``MinAtar.step`` asks in), assigned before each call.
    """

    def __init__(self, n: int, widths: tuple[int, ...]) -> None:
        self.queue: list[np.ndarray] = []
        self.vars = [tf.Variable(tf.zeros([n, w])) for w in widths]
        self.calls = 0

    def __call__(self, key, width: int) -> tf.Tensor:
        if self.queue:
            u = tf.constant(self.queue.pop(0))
        else:
            u = self.vars[self.calls % len(self.vars)]
            self.calls += 1
        assert u.shape[1] == width, (u.shape, width)
        return tf.convert_to_tensor(u)

    def feed(self, *rows: np.ndarray) -> None:
        for var, row in zip(self.vars, rows):
            var.assign(row)


def _random(rng: np.random.Generator, s: dict, n: int, actions: int) -> np.ndarray:
    return rng.integers(0, actions, n)


def _freeway(rng, s, n, actions):  # mostly up, so that chickens cross (lanes are re-drawn)
    return np.where(rng.random(n) < 0.6, 2, rng.integers(0, actions, n))


def _seaquest(rng, s, n, actions):  # dive and fire; surface when oxygen runs low
    a = np.where(rng.random(n) < 0.4, 5, rng.integers(0, actions, n))
    return np.where(s["oxygen"].numpy() < 60, 2, a)


def _counter(field: str, attr: str, low: int, high: int):
    """A ``prepare`` that sets our state's ``field`` and the reference's ``attr`` to the same
    random integers in ``[low, high)``."""

    def prepare(rng, s, refs):
        values = rng.integers(low, high, len(refs))
        s[field] = tf.constant(values, tf.int32)
        for ref, v in zip(refs, values):
            setattr(ref.env, attr, int(v))

    return prepare


def _thin_wave(rng, s, refs):
    """SpaceInvaders starting with a few aliens left, so that waves get cleared (and ramp)."""
    keep = s["aliens"].numpy() & (rng.random(s["aliens"].shape) < 0.15)
    keep[:, 3, 2] = True
    s["aliens"] = tf.constant(keep)
    for ref, k in zip(refs, keep):
        ref.env.alien_map = k.astype(np.float64)


def _lockstep(game: str, n: int = N, steps: int = T, policy=_random, seed: int = 0,
              prepare=None) -> tuple[int, float]:
    """Runs ``n`` envs of ``game`` against ``minatar`` for ``steps`` steps on ``policy``'s
    actions (full action set); ``prepare(rng, our_env_state, refs)`` may first move both to the
    same deeper state. Returns (episodes, total reward)."""
    env = GAMES[game](num_envs=n, minimal_action_set=False)
    inject = Inject(n, (1, env.step_draws, env.reset_draws))
    env.uniforms = inject
    step_fn = tf.function(env.step)
    refs = [Environment(game) for _ in range(n)]
    draws = [Draws() for _ in range(n)]
    for ref, d in zip(refs, draws):
        ref.random = ref.env.random = d
    rng = np.random.default_rng(seed)

    def uniforms(width: int) -> np.ndarray:
        return rng.random((n, width), dtype=np.float32)

    reset_u = uniforms(env.reset_draws)
    inject.queue = [reset_u]
    state, obs = env.reset(make_key(0))
    for i, (ref, d) in enumerate(zip(refs, draws)):
        d.feed(reset=reset_u[i])
        d.phase = "reset"
        ref.reset()
        np.testing.assert_array_equal(obs[i].numpy(), ref.state(), err_msg=f"reset {i}")
    if prepare:
        prepare(rng, state["env"], refs)
    episodes, scored = 0, 0.0
    for t in range(steps):
        sticky, step_u, reset_u = uniforms(1), uniforms(env.step_draws), uniforms(env.reset_draws)
        inject.feed(sticky, step_u, reset_u)
        action = policy(rng, state["env"], n, env.action_spec.n).astype(np.int32)
        state, step = step_fn(state, tf.constant(action), make_key(t))
        step = type(step)(*(v.numpy() for v in step))
        for i, (ref, d) in enumerate(zip(refs, draws)):
            d.feed(sticky=sticky[i, 0:1], step=step_u[i], reset=reset_u[i])
            d.phase = "step"
            reward, done = ref.act(env.actions[action[i]])
            where = f"{game} env {i} step {t}"
            np.testing.assert_array_equal(step.final_obs[i], ref.state(), err_msg=where)
            assert float(step.reward[i]) == reward, where
            assert bool(step.terminated[i]) == done, where
            scored += reward
            if done:
                episodes += 1
                d.phase = "reset"
                ref.reset()
            np.testing.assert_array_equal(step.obs[i], ref.state(), err_msg=where)
    return episodes, scored


SETUPS = {  # per game: a policy and start fields that reach every rule within the run
    "asterix": {},
    "breakout": {},
    "freeway": {"policy": _freeway, "prepare": _counter("time_left", "terminate_timer", 0, T)},
    "seaquest": {"policy": _seaquest},
    "space_invaders": {"prepare": _thin_wave},
}


@pytest.mark.parametrize("game", sorted(GAMES))
def test_matches_minatar_step_for_step(game):
    episodes, scored = _lockstep(game, **SETUPS[game])
    assert episodes > 10 and scored > 5  # resets and rewards were exercised


def test_seaquest_deep_states_match():
    """Surfacing with six divers (and MinAtar's count of -1 after it), difficulty ramps, and
    crowds of enemies: 32 envs x 400 steps starting with 4..6 divers held."""
    episodes, scored = _lockstep("seaquest", n=32, steps=400, policy=_seaquest, seed=1,
                                 prepare=_counter("held", "diver_count", 4, 7))
    assert episodes > 10 and scored > 50


def test_minimal_action_sets_match_minatar():
    for game, cls in GAMES.items():
        assert cls.minimal_actions == tuple(Environment(game).minimal_action_set()), game
        assert cls(1).action_spec.n == len(cls.minimal_actions)
        assert cls(1, minimal_action_set=False).action_spec.n == 6


def test_registered_under_minatar_ids_and_compiles():
    for game in GAMES:
        for version in (0, 1):
            env = registry.env(env_id(game, version))(num_envs=3)
            check_env(env)
        step = tf.function(env.step, jit_compile=True)
        state, _ = env.reset(make_key(1))
        for t in range(3):
            state, out = step(state, tf.zeros([3], tf.int32), make_key(t))
        assert out.obs.dtype == tf.uint8 and out.obs.shape == (3, 10, 10, len(env.channels))
