"""Tests for imagined_rl.hparams_lib: typed hparams and --hparams parsing."""

from __future__ import annotations

import copy
import pickle

import pytest

from imagined_rl.errors import UserError
from imagined_rl.hparams_lib import HParams, HParamsError


def make() -> HParams:
    return HParams(
        learning_rate=1e-3,
        epoch_length=50,
        policy_layers=(64, 64),
        widths=[1.0, 2.0],
        names=["a"],
        optimizer="adam",
        use_gae=True,
        schedule=None,
    )


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- construction and access ------------------------------------------------------------------


def test_attribute_access_and_values_keep_order():
    hp = make()
    assert hp.learning_rate == 1e-3
    assert hp.policy_layers == (64, 64)
    assert list(hp.values()) == [
        "learning_rate", "epoch_length", "policy_layers", "widths", "names", "optimizer",
        "use_gae", "schedule",
    ]
    assert "optimizer" in hp and "nope" not in hp
    assert hp.get("optimizer") == "adam"
    assert hp.get("nope", 7) == 7


def test_values_returns_a_copy():
    hp = make()
    hp.values()["widths"].append(3.0)
    assert hp.widths == [1.0, 2.0]


def test_add_hparam_rejects_existing_and_bad_names():
    hp = make()
    hp.add_hparam("gamma", 0.99)
    assert hp.gamma == 0.99
    with pytest.raises(HParamsError, match="already exists"):
        hp.add_hparam("gamma", 0.9)
    for bad in ("_private", "not-an-identifier", "values", "parse"):
        with pytest.raises(HParamsError):
            hp.add_hparam(bad, 1)


def test_add_hparam_rejects_unsupported_types():
    hp = HParams()
    with pytest.raises(HParamsError, match="unsupported"):
        hp.add_hparam("d", {"a": 1})
    with pytest.raises(HParamsError, match="unsupported"):
        hp.add_hparam("mixed", [1, "a"])


def test_unknown_attribute_is_attribute_error_with_suggestion():
    hp = make()
    assert not hasattr(hp, "lerning_rate")
    with pytest.raises(AttributeError, match="did you mean: learning_rate"):
        _ = hp.lerning_rate


# -- set_hparam type checks -------------------------------------------------------------------


def test_set_hparam_int_promotes_to_float():
    hp = make()
    hp.set_hparam("learning_rate", 1)
    assert hp.learning_rate == 1.0 and isinstance(hp.learning_rate, float)


@pytest.mark.parametrize(
    "name, value",
    [
        ("epoch_length", 12.5),
        ("epoch_length", True),  # bool is not an int here
        ("learning_rate", True),
        ("use_gae", 1),  # bools are strict
        ("optimizer", 3),
        ("policy_layers", 64),
        ("policy_layers", [64, "a"]),
    ],
)
def test_set_hparam_type_errors(name, value):
    hp = make()
    with pytest.raises(HParamsError) as excinfo:
        hp.set_hparam(name, value)
    assert_one_line_error(excinfo, f"hparam {name!r} expects")


def test_set_hparam_sequences_keep_their_container():
    hp = make()
    hp.set_hparam("policy_layers", [32, 16])
    assert hp.policy_layers == (32, 16)
    hp.set_hparam("widths", (1, 2))
    assert hp.widths == [1.0, 2.0] and all(isinstance(w, float) for w in hp.widths)


def test_none_values():
    hp = make()
    hp.set_hparam("schedule", "linear")  # created as None: any type goes, then it sticks
    assert hp.schedule == "linear"
    with pytest.raises(HParamsError, match="expects str"):
        hp.set_hparam("schedule", 3)
    hp.set_hparam("epoch_length", None)  # None may be set on any hparam ...
    assert hp.epoch_length is None
    with pytest.raises(HParamsError, match="expects int"):
        hp.set_hparam("epoch_length", "x")  # ... and the declared type still holds
    hp.set_hparam("epoch_length", 7)
    assert hp.epoch_length == 7


def test_attribute_assignment_is_type_checked_and_cannot_add():
    hp = make()
    hp.learning_rate = 2
    assert hp.learning_rate == 2.0
    with pytest.raises(HParamsError, match="expects int"):
        hp.epoch_length = "many"
    with pytest.raises(HParamsError) as excinfo:
        hp.lerning_rate = 0.1
    assert_one_line_error(excinfo, "add_hparam", "did you mean: learning_rate?")


def test_unknown_set_hparam_is_a_user_error():
    hp = make()
    with pytest.raises(UserError) as excinfo:
        hp.set_hparam("optimiser", "sgd")
    assert_one_line_error(excinfo, "unknown hparam 'optimiser'", "did you mean: optimizer?")


def test_del_hparam():
    hp = make()
    del hp.schedule
    assert "schedule" not in hp
    with pytest.raises(HParamsError):
        hp.del_hparam("schedule")


def test_override_from_dict_is_all_or_nothing():
    hp = make()
    hp.override_from_dict({"epoch_length": 10, "optimizer": "sgd"})
    assert (hp.epoch_length, hp.optimizer) == (10, "sgd")
    with pytest.raises(HParamsError):
        hp.override_from_dict({"epoch_length": 20, "optimizer": 5})
    assert hp.epoch_length == 10


# -- parse ------------------------------------------------------------------------------------


def test_parse_each_type():
    hp = make()
    result = hp.parse(
        "learning_rate=3e-4,epoch_length=12,optimizer=sgd,use_gae=false,"
        "policy_layers=[128,32],widths=[1,2.5],names=[x,y]"
    )
    assert result is hp
    assert hp.learning_rate == 3e-4
    assert hp.epoch_length == 12 and isinstance(hp.epoch_length, int)
    assert hp.optimizer == "sgd"
    assert hp.use_gae is False
    assert hp.policy_layers == (128, 32)
    assert hp.widths == [1.0, 2.5]
    assert hp.names == ["x", "y"]


def test_parse_float_accepts_int_text():
    hp = make().parse("learning_rate=1")
    assert hp.learning_rate == 1.0 and isinstance(hp.learning_rate, float)


def test_parse_int_accepts_integral_scientific_notation():
    assert make().parse("epoch_length=1e6").epoch_length == 1_000_000


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), ("True", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_parse_bool_spellings(text, expected):
    hp = make()
    hp.use_gae = not expected
    assert hp.parse(f"use_gae={text}").use_gae is expected


def test_parse_bracketed_lists_and_whitespace():
    hp = make().parse(" policy_layers = [ 256 , 256, 8 ] ,  learning_rate=1e-3 , optimizer = adam ")
    assert hp.policy_layers == (256, 256, 8)
    assert hp.learning_rate == 1e-3
    assert hp.optimizer == "adam"


def test_parse_empty_list_and_parentheses():
    hp = make().parse("policy_layers=[],names=(p,q)")
    assert hp.policy_layers == ()
    assert hp.names == ["p", "q"]


def test_parse_quoted_strings_may_contain_commas():
    hp = make().parse("optimizer='adam,beta=0.9',names=[\"a,b\", c]")
    assert hp.optimizer == "adam,beta=0.9"
    assert hp.names == ["a,b", "c"]


def test_parse_none_and_untyped():
    hp = make().parse("optimizer=None")
    assert hp.optimizer is None
    hp = make().parse("schedule=[1,2]")
    assert hp.schedule == [1, 2]
    hp = make().parse("schedule=0.5")
    assert hp.schedule == 0.5
    hp = make().parse("schedule=true")
    assert hp.schedule is True


@pytest.mark.parametrize("overrides", ["", "   ", None, ","])
def test_parse_empty_is_noop(overrides):
    hp = make()
    assert hp.parse(overrides) == make()


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ("epoch_length=12.5", ["hparam 'epoch_length' expects int, got '12.5'"]),
        ("epoch_length=ten", ["expects int, got 'ten'"]),
        ("learning_rate=fast", ["expects float"]),
        ("use_gae=yes", ["expects bool", "true/false"]),
        ("policy_layers=64", ["expects tuple of int in brackets", "policy_layers=[64]"]),
        ("policy_layers=[64,x]", ["expects tuple of int"]),
        ("epoch_length=[1,2]", ["expects int, got a list"]),
    ],
)
def test_parse_type_errors(overrides, fragments):
    with pytest.raises(HParamsError) as excinfo:
        make().parse(overrides)
    assert_one_line_error(excinfo, *fragments)


def test_parse_unknown_name_suggests_close_match():
    with pytest.raises(HParamsError) as excinfo:
        make().parse("lerning_rate=0.1")
    assert_one_line_error(
        excinfo, "unknown hparam 'lerning_rate' in --hparams; did you mean: learning_rate?"
    )


def test_parse_unknown_name_without_match_lists_valid_names():
    with pytest.raises(HParamsError) as excinfo:
        make().parse("zzz=1")
    assert_one_line_error(excinfo, "unknown hparam 'zzz'", "valid names include:", "optimizer")


def test_parse_source_names_the_flag():
    with pytest.raises(HParamsError, match="in --eval_hparams"):
        make().parse("zzz=1", source="--eval_hparams")


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ("abc", "malformed --hparams entry 'abc' (expected name=value)"),
        ("epoch_length=3,abc", "malformed --hparams entry 'abc'"),
        ("=3", "malformed --hparams entry '=3'"),
        ("policy_layers=[64,64", "unbalanced brackets"),
        ("policy_layers=64]", "unbalanced brackets"),
        ("optimizer='adam", "unbalanced quotes"),
    ],
)
def test_parse_malformed_entries(overrides, fragment):
    with pytest.raises(HParamsError) as excinfo:
        make().parse(overrides)
    assert_one_line_error(excinfo, fragment)


def test_parse_duplicates_are_an_error():
    with pytest.raises(HParamsError) as excinfo:
        make().parse("epoch_length=1,learning_rate=0.1,epoch_length=2")
    assert_one_line_error(excinfo, "'epoch_length' is set twice in --hparams")


def test_parse_is_all_or_nothing():
    hp = make()
    with pytest.raises(HParamsError):
        hp.parse("epoch_length=99,use_gae=maybe")
    assert hp.epoch_length == 50


def test_parse_errors_are_value_errors_and_user_errors():
    with pytest.raises(ValueError):
        make().parse("abc")
    with pytest.raises(UserError):
        make().parse("abc")


# -- copy, equality, serialisation ------------------------------------------------------------


def test_copy_is_independent():
    hp = make()
    other = hp.copy()
    assert other == hp and other is not hp
    other.widths = [9.0]
    other.epoch_length = 1
    assert hp.widths == [1.0, 2.0] and hp.epoch_length == 50
    with pytest.raises(HParamsError):
        other.epoch_length = "x"  # types are copied too


def test_equality():
    assert make() == make()
    assert make() != make().parse("epoch_length=1")
    assert HParams(a=[1]) != HParams(a=(1,))
    assert make() != {"learning_rate": 1e-3}


def test_json_round_trip_keeps_types():
    hp = make().parse("schedule=linear")
    restored = HParams.from_json(hp.to_json())
    assert restored == hp
    assert restored.policy_layers == (64, 64) and isinstance(restored.policy_layers, tuple)
    assert isinstance(restored.widths, list)
    assert list(restored.values()) == list(hp.values())
    assert restored.to_json() == hp.to_json()
    with pytest.raises(HParamsError):
        restored.epoch_length = 1.5  # the types came back too


def test_from_json_accepts_a_plain_object_and_rejects_garbage():
    assert HParams.from_json('{"a": 1, "b": [1, 2]}') == HParams(a=1, b=[1, 2])
    with pytest.raises(HParamsError) as excinfo:
        HParams.from_json("{not json")
    assert_one_line_error(excinfo, "invalid hparams JSON")
    with pytest.raises(HParamsError, match="expected an object"):
        HParams.from_json("[1, 2]")


def test_repr():
    assert repr(HParams(a=1, b="x", c=(1, 2))) == "HParams(a=1, b='x', c=(1, 2))"


def test_pickle_and_deepcopy():
    hp = make()
    assert pickle.loads(pickle.dumps(hp)) == hp
    assert copy.deepcopy(hp) == hp
