"""Input security filter: dangerous keys, key length, depth and size, walked without recursion."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_aio.errors import SecurityError, ValidationError
from nexus_aio.security import (
    DANGEROUS_KEYS,
    DEFAULT_LIMITS,
    SecurityLimits,
    check_payload,
    is_dangerous_key,
)


def refusal(value: Any, limits: SecurityLimits = DEFAULT_LIMITS, path: str = "") -> SecurityError:
    with pytest.raises(SecurityError) as info:
        check_payload(value, limits, path=path)
    return info.value


def nested_lists(depth: int) -> list[Any]:
    """``depth`` lists inside each other, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --------------------------------------------------------------------------- clean payloads


@pytest.mark.parametrize(
    "value",
    [
        None,
        1,
        "x",
        {},
        [],
        {"a": 1, "b": "two", "c": None, "d": 1.5, "e": True},
        {"items": [1, 2, {"name": "x", "tags": ["a", "b"]}], "config": {"depth": 3}},
        ("tuples", "count", "as", "arrays"),
    ],
)
def test_clean_payloads_pass(value: Any) -> None:
    check_payload(value)  # raises if refused


def test_similar_but_harmless_keys_pass() -> None:
    check_payload({"proto": 1, "_proto_": 2, "Constructor": 3, "class": 4, "__private": 5})


def test_required_names_are_dangerous() -> None:
    required = {
        "__proto__",
        "constructor",
        "prototype",
        "__class__",
        "__dict__",
        "__globals__",
        "__builtins__",
        "__import__",
        "__init__",
        "__subclasses__",
        "__bases__",
        "__mro__",
        "__code__",
        "__reduce__",
        "__getattribute__",
        "__base__",
    }
    assert required <= DANGEROUS_KEYS


# --------------------------------------------------------------------------- dangerous keys


@pytest.mark.parametrize("key", sorted(DANGEROUS_KEYS))
def test_every_dangerous_key_is_refused_at_top_level(key: str) -> None:
    err = refusal({"ok": 1, key: 1}, path="inputs")
    assert err.status == 400
    assert err.type == "SecurityError"
    assert isinstance(err, ValidationError)
    assert err.details == {"field": f"inputs.{key}", "reason": "dangerous_key", "limit": None}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"config": {"__proto__": {"admin": True}}}, "inputs.config.__proto__"),
        ({"items": [1, {"__class__": "x"}]}, "inputs.items[1].__class__"),
        ({"a": [[{"b": {"constructor": {}}}]]}, "inputs.a[0][0].b.constructor"),
    ],
)
def test_dangerous_keys_are_refused_at_any_depth(payload: Any, field: str) -> None:
    assert refusal(payload, path="inputs").details["field"] == field


def test_dangerous_key_inside_a_top_level_list_has_an_index_path() -> None:
    assert refusal([{"a": 1}, {"prototype": 1}]).details["field"] == "[1].prototype"


@pytest.mark.parametrize("key", ["__PROTO__", "__Class__", "__GLOBALS__", "__definegetter__"])
def test_dunder_keys_are_refused_in_any_case(key: str) -> None:
    assert is_dangerous_key(key)
    assert refusal({key: 1}).details["reason"] == "dangerous_key"


@pytest.mark.parametrize("key", ["Constructor", "PROTOTYPE", "F_Globals"])
def test_plain_names_are_matched_exactly(key: str) -> None:
    assert not is_dangerous_key(key)
    check_payload({key: 1})


def test_dangerous_names_as_values_are_fine() -> None:
    check_payload({"name": "__proto__", "list": ["constructor", "__class__"]})


def test_top_level_problem_without_path_names_the_payload() -> None:
    err = refusal([1, 2, 3], SecurityLimits(max_items=2))
    assert err.details["field"] == "payload"


# --------------------------------------------------------------------------- key length


def test_key_at_the_length_limit_passes_and_one_longer_is_refused() -> None:
    check_payload({"k" * 256: 1})
    err = refusal({"outer": {"k" * 257: 1}}, path="inputs")
    assert err.details["reason"] == "key_too_long"
    assert err.details["limit"] == 256
    assert err.details["field"] == "inputs.outer." + "k" * 32 + "..."


def test_key_length_limit_is_configurable() -> None:
    limits = SecurityLimits(max_key_length=3)
    check_payload({"abc": 1}, limits)
    assert refusal({"abcd": 1}, limits).details["limit"] == 3


# --------------------------------------------------------------------------- depth


def test_depth_counts_containers() -> None:
    one = SecurityLimits(max_depth=1)
    check_payload(5, SecurityLimits(max_depth=0))
    check_payload({"a": 1}, one)
    check_payload([1, 2], one)
    err = refusal({"a": {"b": 1}}, one, path="inputs")
    assert err.details == {"field": "inputs.a", "reason": "too_deep", "limit": 1}
    assert refusal([[1]], one).details["field"] == "[0]"


def test_a_flat_dict_is_too_deep_for_max_depth_zero() -> None:
    assert refusal({"a": 1}, SecurityLimits(max_depth=0)).details["reason"] == "too_deep"


def test_default_depth_limit_is_inclusive() -> None:
    check_payload(nested_lists(64))
    err = refusal(nested_lists(65))
    assert err.details["reason"] == "too_deep"
    assert err.details["limit"] == 64


def test_ten_thousand_deep_list_is_refused_without_recursion() -> None:
    err = refusal({"data": nested_lists(10_000)}, path="inputs")
    assert err.details["reason"] == "too_deep"
    assert err.details["field"].startswith("inputs.data[0][0]")


def test_deep_dicts_are_refused_too() -> None:
    value: dict[str, Any] = {}
    for _ in range(10_000):
        value = {"n": value}
    assert refusal(value).details["reason"] == "too_deep"


# --------------------------------------------------------------------------- size


def test_items_count_keys_and_array_items_in_the_whole_payload() -> None:
    payload = {"a": [1, 2], "b": {"c": 1}}  # 2 keys + 2 items + 1 key = 5
    check_payload(payload, SecurityLimits(max_items=5))
    err = refusal(payload, SecurityLimits(max_items=4), path="inputs")
    assert err.details["reason"] == "too_many_items"
    assert err.details["limit"] == 4


def test_million_key_dict_is_refused() -> None:
    huge = dict.fromkeys(map(str, range(1_000_000)), 0)
    err = refusal(huge, path="inputs")
    assert err.details == {"field": "inputs", "reason": "too_many_items", "limit": 100_000}


def test_many_small_containers_add_up() -> None:
    payload = [[0] * 10 for _ in range(20)]  # 20 + 200 items
    check_payload(payload, SecurityLimits(max_items=220))
    assert refusal(payload, SecurityLimits(max_items=219)).details["reason"] == "too_many_items"


# --------------------------------------------------------------------------- other inputs


def test_non_string_keys_are_not_name_checked() -> None:
    check_payload({1: {2: 3}, None: [1]})


def test_dict_subclass_values_are_walked() -> None:
    class Sub(dict[str, Any]):
        pass

    assert refusal({"a": Sub(__proto__=1)}).details["field"] == "a.__proto__"


def test_limits_are_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_depth = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- properties

key_names = st.sampled_from(sorted(DANGEROUS_KEYS)) | st.text(max_size=8) | st.just("__PROTO__")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(key_names, children, max_size=4)
    ),
    max_leaves=25,
)
small_limits = st.builds(
    SecurityLimits,
    max_depth=st.integers(0, 6),
    max_key_length=st.integers(0, 10),
    max_items=st.integers(0, 30),
)


def reference_ok(value: Any, limits: SecurityLimits) -> bool:
    """A plain recursive statement of the rules, to compare the fast iterative walk against."""
    items = 0

    def visit(node: Any, depth: int) -> bool:
        nonlocal items
        if not isinstance(node, dict | list):
            return True
        if depth > limits.max_depth:
            return False
        items += len(node)
        if isinstance(node, dict):
            for key in node:
                if is_dangerous_key(key) or len(key) > limits.max_key_length:
                    return False
        children = node.values() if isinstance(node, dict) else node
        return all(visit(child, depth + 1) for child in children)

    return visit(value, 1) and items <= limits.max_items


def dangerous_keys_anywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            key.lower() in {k.lower() for k in DANGEROUS_KEYS if k.startswith("__")}
            or key in DANGEROUS_KEYS
            or dangerous_keys_anywhere(child)
            for key, child in value.items()
        )
    if isinstance(value, list):
        return any(dangerous_keys_anywhere(child) for child in value)
    return False


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_passing_payloads_hold_no_dangerous_key_at_any_depth(value: Any) -> None:
    try:
        check_payload(value)
    except SecurityError:
        return
    assert not dangerous_keys_anywhere(value)


@settings(max_examples=400, deadline=None)
@given(json_values, small_limits)
def test_check_payload_matches_the_reference_rules(value: Any, limits: SecurityLimits) -> None:
    try:
        check_payload(value, limits, path="inputs")
        ok = True
    except SecurityError as exc:
        assert set(exc.details) == {"field", "reason", "limit"}
        assert exc.details["field"].startswith("inputs")
        ok = False
    assert ok == reference_ok(value, limits)
