"""Tests for imagined_rl.registry: named hparams sets, problems, envs and models."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

import pytest

import imagined_rl
from imagined_rl import registry
from imagined_rl.errors import UnknownNameError, UserError
from imagined_rl.hparams_lib import HParams, HParamsError


@pytest.fixture(autouse=True)
def isolated_registries(monkeypatch):
    """Undoes each test's registrations, and keeps lookups from importing modules.

    ``_populate`` is replaced by a recorder (the built-in env module imports TensorFlow); tests
    of the real one call ``real_populate``. Entries that a real import registered during a test
    are kept, since their modules stay imported and would not register them again.
    """
    snapshots = [r.snapshot() for r in registry._ALL_REGISTRIES]
    calls: list[str] = []
    real_populate = registry._populate
    monkeypatch.setattr(registry, "_populate", calls.append)
    yield types.SimpleNamespace(calls=calls, real_populate=real_populate)
    for r, before in zip(registry._ALL_REGISTRIES, snapshots):
        imported = {
            name: obj
            for name, obj in r.snapshot().items()
            if name not in before and getattr(obj, "__module__", None) != __name__
        }
        r.restore({**before, **imported})


def test_fixture_removes_test_registrations_1():
    registry.register_hparams("test_fixture_check")(lambda: HParams())
    registry.register_env("TestFixtureCheck-v0")(type("E", (), {}))


def test_fixture_removes_test_registrations_2():
    assert "test_fixture_check" not in registry.list_hparams()
    assert "TestFixtureCheck-v0" not in registry.list_envs()


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# -- hparams sets -----------------------------------------------------------------------------


def test_register_hparams_bare_uses_function_name():
    @registry.register_hparams
    def test_bare_params():
        """Bare decorator."""
        return HParams(lr=0.1)

    assert callable(test_bare_params)  # returned unchanged
    assert test_bare_params().lr == 0.1
    assert "test_bare_params" in registry.list_hparams()
    assert registry.hparams("test_bare_params") == HParams(lr=0.1)


def test_register_hparams_with_name_and_with_empty_call():
    @registry.register_hparams("test_named_params")
    def whatever():
        return HParams(lr=0.2)

    @registry.register_hparams()
    def test_called_params():
        return HParams(lr=0.3)

    assert registry.hparams("test_named_params").lr == 0.2
    assert registry.hparams("test_called_params").lr == 0.3
    assert "whatever" not in registry.list_hparams()


def test_hparams_sets_can_build_on_each_other_and_are_fresh_each_time():
    @registry.register_hparams
    def test_base_params():
        return HParams(lr=0.1, layers=(64, 64))

    @registry.register_hparams
    def test_derived_params():
        hp = test_base_params()
        hp.lr = 0.5
        hp.add_hparam("gamma", 0.99)
        return hp

    first = registry.hparams("test_derived_params")
    first.lr = 9.0
    second = registry.hparams("test_derived_params")
    assert second == HParams(lr=0.5, layers=(64, 64), gamma=0.99)


def test_hparams_with_overrides():
    @registry.register_hparams
    def test_override_params():
        return HParams(lr=0.1, layers=(64, 64), optimizer="adam")

    hp = registry.hparams_with_overrides("test_override_params", "lr=1e-3,layers=[32,32]")
    assert hp == HParams(lr=1e-3, layers=(32, 32), optimizer="adam")
    assert registry.hparams_with_overrides("test_override_params", "") == hp.parse(
        "lr=0.1,layers=[64,64]"
    )
    with pytest.raises(HParamsError) as excinfo:
        registry.hparams_with_overrides("test_override_params", "optimiser=sgd")
    assert "did you mean: optimizer?" in one_line(excinfo)


def test_hparams_set_must_return_hparams():
    @registry.register_hparams
    def test_broken_params():
        return {"lr": 0.1}

    with pytest.raises(TypeError, match="returned dict, not HParams"):
        registry.hparams("test_broken_params")


@pytest.mark.parametrize("name", ["TestParams", "test-params", "1test", "_test", "", "test params"])
def test_hparams_names_must_be_snake_case(name):
    with pytest.raises(ValueError, match="snake_case"):
        registry.register_hparams(name)(lambda: HParams())


def test_bare_registration_with_bad_function_name_fails():
    with pytest.raises(ValueError, match="snake_case"):

        @registry.register_hparams
        def testCamelParams():
            return HParams()


def test_duplicate_hparams_name_is_an_error():
    @registry.register_hparams("test_dup_params")
    def first():
        return HParams(a=1)

    with pytest.raises(ValueError, match="already registered"):

        @registry.register_hparams("test_dup_params")
        def second():
            return HParams(a=2)

    assert registry.hparams("test_dup_params").a == 1


def test_reregistering_the_same_definition_replaces_it():
    """Re-running a notebook cell (same module and qualified name) is not a duplicate."""

    def define(value):
        @registry.register_hparams
        def test_reloaded_params():
            return HParams(a=value)

    define(1)
    define(2)
    assert registry.hparams("test_reloaded_params").a == 2


def test_register_rejects_non_names():
    with pytest.raises(TypeError):
        registry.register_hparams(3)


def test_unknown_hparams_set_suggests_close_match():
    @registry.register_hparams
    def test_ppo_original_params():
        return HParams()

    with pytest.raises(UnknownNameError) as excinfo:
        registry.hparams("test_ppo_orignal_params")
    message = one_line(excinfo)
    assert message.startswith(
        "unknown hparams set 'test_ppo_orignal_params'; did you mean: test_ppo_original_params"
    ) and message.endswith("(see --registry_help)")
    assert excinfo.value.suggestions[0] == "test_ppo_original_params"
    assert isinstance(excinfo.value, LookupError) and isinstance(excinfo.value, UserError)


def test_unknown_name_without_close_match_lists_known_names():
    for i in range(10):
        registry._HPARAMS.register(f"test_many_{i}", lambda: HParams())
    with pytest.raises(UnknownNameError) as excinfo:
        registry.hparams("zzzzzzzzzzzzzzzzzzzz")
    message = one_line(excinfo)
    assert "known hparams sets:" in message and "in total)" in message
    assert "in total" in message


def test_unknown_name_in_empty_registry():
    registry._MODELS.restore({})
    with pytest.raises(UnknownNameError) as excinfo:
        registry.model("test_nothing")
    assert "no models are registered" in one_line(excinfo)


# -- problems and models ----------------------------------------------------------------------


def test_register_problem_class_bare_uses_snake_case_class_name():
    @registry.register_problem
    class TestGymPongRandom:
        pass

    assert "test_gym_pong_random" in registry.list_problems()
    assert isinstance(registry.problem("test_gym_pong_random"), TestGymPongRandom)


def test_register_problem_with_name_and_factory():
    @registry.register_problem("test_pong_problem")
    class Pong:
        pass

    @registry.register_problem
    def test_factory_problem():
        return Pong()

    assert isinstance(registry.problem("test_pong_problem"), Pong)
    assert isinstance(registry.problem("test_factory_problem"), Pong)
    assert registry.problem("test_pong_problem") is not registry.problem("test_pong_problem")
    with pytest.raises(ValueError, match="snake_case"):
        registry.register_problem("TestPong")(Pong)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_problem("test_pong_problem")(test_factory_problem)


def test_unknown_problem():
    @registry.register_problem
    class TestBreakout:
        pass

    with pytest.raises(UnknownNameError) as excinfo:
        registry.problem("test_breakot")
    assert one_line(excinfo).startswith(
        "unknown problem 'test_breakot'; did you mean: test_breakout?"
    )


def test_register_model_both_forms():
    @registry.register_model
    class TestBasicStochastic:
        pass

    @registry.register_model("test_deterministic")
    class Other:
        pass

    assert {"test_basic_stochastic", "test_deterministic"} <= set(registry.list_models())
    assert registry.model("test_basic_stochastic") is TestBasicStochastic
    assert registry.model("test_deterministic") is Other
    with pytest.raises(UnknownNameError, match="unknown model 'test_determinstic'"):
        registry.model("test_determinstic")


# -- envs -------------------------------------------------------------------------------------


def test_register_env_and_lookup_is_case_sensitive():
    @registry.register_env("TestCartPole-v1")
    class TestCartPole:
        """Cart-pole for the tests."""

    assert registry.env("TestCartPole-v1") is TestCartPole  # the class, not an instance
    assert "TestCartPole-v1" in registry.list_envs()
    with pytest.raises(UnknownNameError) as excinfo:
        registry.env("testcartpole-v1")
    assert "unknown env 'testcartpole-v1'; did you mean: TestCartPole-v1" in one_line(excinfo)


@pytest.mark.parametrize(
    "name", ["TestCartPole", "TestCartPole-v", "Test CartPole-v1", "TestCartPole-1", ""]
)
def test_env_names_must_look_like_gym_ids(name):
    with pytest.raises(ValueError, match="CartPole-v1"):
        registry.register_env(name)(type("E", (), {}))


def test_env_ids_may_have_namespaces_and_underscores():
    registry.register_env("TestNs/My_Env-v12")(type("E", (), {}))
    assert registry.env("TestNs/My_Env-v12").__name__ == "E"


def test_register_env_needs_a_name():
    with pytest.raises(TypeError):
        registry.register_env(type("E", (), {}))


def test_duplicate_env_is_an_error():
    registry.register_env("TestDup-v0")(type("A", (), {}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_env("TestDup-v0")(type("B", (), {}))


# -- help and lazy population -----------------------------------------------------------------


def test_help_string_lists_everything():
    @registry.register_hparams
    def test_help_params():
        """Params shown in the help.

        More text that is not shown.
        """
        return HParams()

    registry.register_problem("test_help_problem")(type("P", (), {}))
    registry.register_env("TestHelp-v0")(type("E", (), {"__doc__": "A help env."}))
    registry.register_model("test_help_model")(type("M", (), {}))
    text = registry.help_string()
    for fragment in (
        "hparams sets (",
        "problems (",
        "envs (",
        "models (",
        "test_help_params",
        "Params shown in the help.",
        "test_help_problem",
        "TestHelp-v0",
        "A help env.",
        "test_help_model",
    ):
        assert fragment in text
    assert "More text" not in text


def test_help_string_marks_empty_registries():
    registry._MODELS.restore({})
    assert "models (0):\n  (none registered)" in registry.help_string()


def test_lookups_and_listings_populate_first(isolated_registries):
    calls = isolated_registries.calls
    registry.list_hparams()
    with pytest.raises(UnknownNameError):
        registry.hparams("test_absent")
    with pytest.raises(UnknownNameError):
        registry.problem("test_absent")
    with pytest.raises(UnknownNameError):
        registry.env("TestAbsent-v0")
    registry.list_models()
    assert calls == ["hparams", "hparams", "problem", "env", "model"]


def test_real_populate_imports_builtin_packages(isolated_registries):
    isolated_registries.real_populate("hparams")
    assert "imagined_rl.hparams" in sys.modules
    assert "imagined_rl.problems" in sys.modules


def test_real_populate_tolerates_only_a_missing_env_module(isolated_registries, monkeypatch):
    real_import = importlib.import_module
    imported: list[str] = []
    module = registry._ENV_MODULES[0]

    def fake_import(name, package=None):
        imported.append(name)
        if name == module:
            raise ModuleNotFoundError(f"No module named {name!r}", name=missing)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    missing = module
    isolated_registries.real_populate("env")  # the env module itself is absent: fine
    assert set(registry._ENV_MODULES) <= set(imported)

    missing = "tensorflow"  # the env module exists but a dependency is missing: re-raised
    with pytest.raises(ModuleNotFoundError):
        isolated_registries.real_populate("env")

    imported.clear()
    isolated_registries.real_populate("problem")
    assert not set(registry._ENV_MODULES) & set(imported)  # only env lookups import them


def test_registry_module_does_not_import_tensorflow():
    """Importing the registry (and hparams) must stay cheap: checked in a fresh interpreter."""
    import subprocess

    code = (
        "import sys, imagined_rl.registry, imagined_rl.hparams_lib, imagined_rl.errors;"
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_children_on_another_xla_get_the_users_xla_flags():
    """The package adds TF 2.21 XLA flags to ``XLA_FLAGS``; ``foreign_env`` gives children on
    another XLA (JAX, the TF 2.20/2.15 venvs, which abort on unknown flags) the user's value."""
    import subprocess

    code = ("import json, os, imagined_rl;"
            "print(json.dumps([os.environ.get('XLA_FLAGS'), imagined_rl.foreign_env().get("
            "'XLA_FLAGS')]))")
    run = lambda env: json.loads(subprocess.run([sys.executable, "-c", code], env=env,
                                                capture_output=True, text=True,
                                                check=True).stdout)
    if imagined_rl._tf_version() < (2, 21):
        pytest.skip("the flag is added on TensorFlow 2.21+ only")
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "IMAGINED_RL_USER_XLA_FLAGS")}
    ours, theirs = run(base)
    assert all(f"{k}={v}" in ours for k, v in imagined_rl.XLA_DEFAULTS.items()) and theirs is None
    ours, theirs = run(dict(base, XLA_FLAGS="--xla_dump_to=/tmp/x"))
    assert ours.startswith("--xla_dump_to=/tmp/x") and theirs == "--xla_dump_to=/tmp/x"
    # a process started by one that imported the package (it inherits our flag): the same
    child = dict(base, XLA_FLAGS=ours, IMAGINED_RL_USER_XLA_FLAGS="--xla_dump_to=/tmp/x")
    assert run(child) == [ours, "--xla_dump_to=/tmp/x"]
    # a value the user set for one of our flags wins: not added a second time
    mine = " ".join(f"{k}=none" for k in imagined_rl.XLA_DEFAULTS)
    assert run(dict(base, XLA_FLAGS=mine)) == [mine, mine]
