"""Input schemas from type hints: strict JSON typing, error details, /schema and JSON Schema."""

from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_aio.errors import RegistrationError, ValidationError
from nexus_aio.workflows.coerce import coerce_text
from nexus_aio.workflows.describe import output_schema
from nexus_aio.workflows.inputs import InputField, InputSchema
from nexus_aio.workflows.jsonschema import type_json_schema
from nexus_aio.workflows.jsontypes import MISSING, json_type_name, received_type_name
from nexus_aio.workflows.problems import MAX_REPORTED_ERRORS

# --------------------------------------------------------------------------- fixtures


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Config:
    name: str
    depth: int = 2
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


class Point(TypedDict):
    x: int
    y: int
    label: NotRequired[str]


class Context:
    """Stands in for the core's injected Context class."""


def schema_of(fn: Any) -> InputSchema:
    return InputSchema.from_callable(fn)


def problem(fn: Any, inputs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        schema_of(fn).validate(inputs)
    return info.value


def one_int(a: int) -> None: ...


def one_float(a: float) -> None: ...


def one_bool(a: bool) -> None: ...


def one_str(a: str) -> None: ...


# --------------------------------------------------------------------------- strict scalars


@pytest.mark.parametrize(
    ("value", "received"),
    [("3", "string"), (1.5, "number"), (1.0, "number"), (True, "boolean"), (None, "null")],
)
def test_validate_rejects_non_integers_for_int(value: Any, received: str) -> None:
    err = problem(one_int, {"a": value})
    assert err.details["expected"] == "integer"
    assert err.details["received"] == received


def test_validate_accepts_int_for_float_and_converts_it() -> None:
    out = schema_of(one_float).validate({"a": 3})
    assert out == {"a": 3.0}
    assert type(out["a"]) is float


@pytest.mark.parametrize("value", [True, "1.5", None, [1]])
def test_validate_rejects_non_numbers_for_float(value: Any) -> None:
    assert problem(one_float, {"a": value}).details["expected"] == "number"


def test_validate_refuses_int_too_large_for_float() -> None:
    err = problem(one_float, {"a": 10**400})
    assert err.details["field"] == "a"
    assert err.details["received"] == "number"


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_validate_rejects_non_booleans_for_bool(value: Any) -> None:
    assert problem(one_bool, {"a": value}).details["expected"] == "boolean"


def test_validate_rejects_number_for_string_with_documented_details() -> None:
    def wf(param1: str) -> None: ...

    err = problem(wf, {"param1": 123})
    assert err.status == 400
    assert err.type == "ValidationError"
    assert err.message == "Invalid parameter: param1"
    assert err.details == {
        "field": "param1",
        "expected": "string",
        "received": "number",
        "errors": [
            {
                "field": "param1",
                "expected": "string",
                "received": "number",
                "message": "param1: expected string, received number",
            }
        ],
    }


@pytest.mark.parametrize("value", [1.5, 7, -(10**30)])
def test_validate_reports_any_json_number_as_received_number(value: Any) -> None:
    assert problem(one_str, {"a": value}).details["received"] == "number"


def test_validate_returns_kwargs_with_defaults_filled_in() -> None:
    def wf(a: int, b: str = "x", c: float | None = None) -> None: ...

    assert schema_of(wf).validate({"a": 1}) == {"a": 1, "b": "x", "c": None}


def test_validate_gives_each_call_its_own_copy_of_a_mutable_default() -> None:
    def wf(items: list[int] = [1, 2]) -> None:  # noqa: B006 - the point of the test
        ...

    schema = schema_of(wf)
    first = schema.validate({})
    first["items"].append(3)
    assert schema.validate({}) == {"items": [1, 2]}


def test_validate_does_not_copy_immutable_defaults() -> None:
    sentinel = ("a", "b")

    def wf(t: Any = sentinel) -> None: ...

    assert schema_of(wf).validate({})["t"] is sentinel


# --------------------------------------------------------------------------- problems


def test_validate_reports_missing_required_input() -> None:
    err = problem(one_int, {})
    assert err.message == "Invalid parameter: a"
    assert err.details["field"] == "a"
    assert err.details["expected"] == "integer"
    assert err.details["received"] == "missing"


def test_validate_rejects_unknown_input() -> None:
    err = problem(one_int, {"a": 1, "x": "hi"})
    assert err.details["field"] == "x"
    assert err.details["expected"] == "nothing"
    assert err.details["received"] == "string"
    assert err.details["errors"][0]["message"] == "Unknown input: x"


@pytest.mark.parametrize(
    ("inputs", "received"), [([1, 2], "array"), ("x", "string"), (None, "null")]
)
def test_validate_rejects_inputs_that_are_not_an_object(inputs: Any, received: str) -> None:
    err = problem(one_int, inputs)
    assert err.message == "Invalid parameter: inputs"
    assert (err.details["field"], err.details["expected"], err.details["received"]) == (
        "inputs",
        "object",
        received,
    )


def test_validate_reports_every_problem_and_the_first_at_top_level() -> None:
    def wf(a: int, b: str, c: bool) -> None: ...

    err = problem(wf, {"a": "1", "c": 1, "d": 0})
    assert err.message == "4 invalid inputs: a, b, c, d"
    assert (err.details["field"], err.details["expected"], err.details["received"]) == (
        "a",
        "integer",
        "string",
    )
    assert [(e["field"], e["expected"], e["received"]) for e in err.details["errors"]] == [
        ("a", "integer", "string"),
        ("b", "string", "missing"),
        ("c", "boolean", "number"),
        ("d", "nothing", "number"),
    ]
    assert all(e["message"] for e in err.details["errors"])


def test_validate_gives_paths_into_lists_and_objects() -> None:
    def wf(items: list[int], config: Config) -> None: ...

    err = problem(wf, {"items": [1, 2, "three", 4, None], "config": {"name": 5, "extra": 1}})
    fields = [(e["field"], e["expected"], e["received"]) for e in err.details["errors"]]
    assert fields == [
        ("items[2]", "integer", "string"),
        ("items[4]", "integer", "null"),
        ("config.name", "string", "number"),
        ("config.extra", "nothing", "number"),
    ]


def test_validate_reports_missing_nested_field_with_its_path() -> None:
    def wf(config: Config) -> None: ...

    err = problem(wf, {"config": {"depth": 3}})
    assert (err.details["field"], err.details["expected"], err.details["received"]) == (
        "config.name",
        "string",
        "missing",
    )


def test_validate_paths_through_recursive_dataclass() -> None:
    def wf(tree: Tree) -> None: ...

    err = problem(wf, {"tree": {"value": 1, "children": [{"value": 2}, {"value": "x"}]}})
    assert err.details["field"] == "tree.children[1].value"


def test_validate_paths_through_nested_lists() -> None:
    def wf(grid: list[list[int]]) -> None: ...

    err = problem(wf, {"grid": [[1, 2], [3, "4"], []]})
    assert [e["field"] for e in err.details["errors"]] == ["grid[1][1]"]


def test_validate_caps_listed_problems_but_counts_them_all() -> None:
    def wf(items: list[int]) -> None: ...

    err = problem(wf, {"items": ["x"] * (MAX_REPORTED_ERRORS + 50)})
    assert len(err.details["errors"]) == MAX_REPORTED_ERRORS
    assert err.details["error_count"] == MAX_REPORTED_ERRORS + 50
    assert err.message.startswith(f"{MAX_REPORTED_ERRORS + 50} invalid inputs: items[0], ")
    assert err.message.endswith(", ...")


def test_validate_refuses_a_too_deep_recursive_document_cleanly() -> None:
    def wf(tree: Tree) -> None: ...

    doc: dict[str, Any] = {"value": 0}
    for _ in range(5000):
        doc = {"value": 0, "children": [doc]}
    err = problem(wf, {"tree": doc})
    assert err.details["field"] == "tree"


# --------------------------------------------------------------------------- richer types


def test_optional_accepts_null_and_the_type() -> None:
    def wf(a: Optional[int], b: int | None = 3) -> None:  # noqa: UP045 - both spellings
        ...

    schema = schema_of(wf)
    assert schema.validate({"a": None, "b": None}) == {"a": None, "b": None}
    assert schema.validate({"a": 1}) == {"a": 1, "b": 3}
    assert schema.fields["a"].required  # Optional without default is still required


def test_optional_names_null_in_expected() -> None:
    def wf(a: int | None) -> None: ...

    assert problem(wf, {"a": "x"}).details["expected"] == "integer or null"


def test_literal_accepts_listed_values_only() -> None:
    def wf(mode: Literal["fast", "slow"]) -> None: ...

    assert schema_of(wf).validate({"mode": "slow"}) == {"mode": "slow"}
    err = problem(wf, {"mode": "medium"})
    assert err.details["expected"] == 'one of ["fast", "slow"]'
    assert err.details["received"] == "string"


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_literal_int_does_not_match_equal_values_of_other_types(value: Any) -> None:
    def wf(n: Literal[1, 2]) -> None: ...

    problem(wf, {"n": value})


def test_enum_input_is_looked_up_by_value() -> None:
    def wf(color: Color, level: Level = Level.LOW) -> None: ...

    out = schema_of(wf).validate({"color": "blue", "level": 2})
    assert out["color"] is Color.BLUE
    assert out["level"] is Level.HIGH
    assert problem(wf, {"color": "green"}).details["expected"] == 'one of ["red", "blue"]'
    assert problem(wf, {"color": "red", "level": True}).details["field"] == "level"


def test_enum_member_is_accepted_as_itself() -> None:
    def wf(color: Color) -> None: ...

    assert schema_of(wf).validate({"color": Color.RED})["color"] is Color.RED


def test_enum_with_non_json_values_is_refused_at_registration() -> None:
    class Ratio(enum.Enum):
        HALF = 0.5

    def wf(r: Ratio) -> None: ...

    with pytest.raises(RegistrationError, match=r"parameter 'r'.*Ratio"):
        schema_of(wf)


def test_dataclass_input_is_built() -> None:
    def wf(config: Config) -> None: ...

    out = schema_of(wf).validate({"config": {"name": "n", "tags": ["a"]}})
    assert out == {"config": Config(name="n", depth=2, tags=["a"])}


def test_dataclass_post_init_refusal_becomes_validation_error() -> None:
    def wf(p: Positive) -> None: ...

    err = problem(wf, {"p": {"n": -1}})
    assert err.details["field"] == "p"
    assert "n must be positive" in err.details["errors"][0]["message"]


def test_typeddict_input_stays_a_dict_and_checks_keys() -> None:
    def wf(point: Point) -> None: ...

    schema = schema_of(wf)
    out = schema.validate({"point": {"x": 1, "y": 2}})
    assert out == {"point": {"x": 1, "y": 2}}
    assert type(out["point"]) is dict
    err = problem(wf, {"point": {"x": 1, "label": 3, "z": 0}})
    assert [(e["field"], e["received"]) for e in err.details["errors"]] == [
        ("point.y", "missing"),
        ("point.label", "number"),
        ("point.z", "number"),
    ]


def test_dict_of_values_checks_each_value() -> None:
    def wf(scores: dict[str, int]) -> None: ...

    assert schema_of(wf).validate({"scores": {"a": 1}}) == {"scores": {"a": 1}}
    assert problem(wf, {"scores": {"bob": 1.5}}).details["field"] == "scores.bob"
    assert problem(wf, {"scores": [1]}).details["expected"] == "object"


def test_union_tries_each_branch() -> None:
    def wf(key: int | str) -> None: ...

    schema = schema_of(wf)
    assert schema.validate({"key": 1}) == {"key": 1}
    assert schema.validate({"key": "a"}) == {"key": "a"}
    assert problem(wf, {"key": 1.5}).details["expected"] == "integer or string"


@pytest.mark.parametrize("value", [None, 1, "s", [1, {"a": None}], {"k": [True]}])
def test_any_and_unannotated_accept_any_json(value: Any) -> None:
    def wf(a: Any, b) -> None: ...

    assert schema_of(wf).validate({"a": value, "b": value}) == {"a": value, "b": value}


def test_bare_list_and_dict_check_only_the_container() -> None:
    def wf(items: list, mapping: dict) -> None: ...

    assert schema_of(wf).validate({"items": [1, "a"], "mapping": {"k": [1]}})
    assert problem(wf, {"items": {}, "mapping": {}}).details["expected"] == "array"


def test_annotated_string_metadata_becomes_the_description() -> None:
    def wf(q: Annotated[str, "the search text"]) -> None: ...

    schema = schema_of(wf)
    assert schema.fields["q"].description == "the search text"
    assert schema.describe()["q"]["description"] == "the search text"
    assert schema.validate({"q": "x"}) == {"q": "x"}


# --------------------------------------------------------------------------- registration


def test_from_callable_skips_injected_params() -> None:
    seen = []

    def wf(ctx: Context, a: int) -> None: ...

    def skip(param: inspect.Parameter, annotation: Any) -> bool:
        seen.append((param.name, annotation))
        return annotation is Context

    schema = InputSchema.from_callable(wf, skip=skip)
    assert list(schema.fields) == ["a"]
    assert seen == [("ctx", Context), ("a", int)]  # resolved despite string annotations


def test_unresolvable_annotation_is_passed_to_skip_as_text() -> None:
    def wf(ctx: NotDefinedAnywhere, a: int) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    schema = InputSchema.from_callable(wf, skip=lambda p, ann: ann == "NotDefinedAnywhere")
    assert list(schema.fields) == ["a"]
    with pytest.raises(RegistrationError, match=r"parameter 'ctx'.*NotDefinedAnywhere.*module"):
        InputSchema.from_callable(wf)


@pytest.mark.parametrize("signature", ["*args: int", "**kwargs: int"])
def test_var_args_are_refused(signature: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def wf(a: int, {signature}): pass", namespace)
    with pytest.raises(RegistrationError, match=r"\*args/\*\*kwargs"):
        schema_of(namespace["wf"])


def test_positional_only_params_are_refused() -> None:
    def wf(a: int, /) -> None: ...

    with pytest.raises(RegistrationError, match=r"parameter 'a'.*positional-only"):
        schema_of(wf)


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [(set[int], "unsupported"), (dict[int, str], "dict keys must be str"), (bytes, "unsupported")],
)
def test_unsupported_annotation_is_refused_naming_the_parameter(
    annotation: Any, fragment: str
) -> None:
    field = InputField("data", annotation, True, MISSING)
    with pytest.raises(RegistrationError, match=f"parameter 'data'.*{fragment}"):
        InputSchema.from_fields([field])


@dataclasses.dataclass
class Bad:
    when: complex


def test_unsupported_nested_annotation_names_the_field() -> None:
    def wf(b: Bad) -> None: ...

    with pytest.raises(RegistrationError, match=r"parameter 'b', field Bad\.when"):
        schema_of(wf)


def test_from_callable_works_for_partials_and_callable_objects() -> None:
    import functools

    def base(a: int, b: str) -> None: ...

    class Job:
        def __call__(self, n: float) -> None: ...

    assert list(schema_of(functools.partial(base, 1)).fields) == ["b"]
    bound_by_name = schema_of(functools.partial(base, b="x"))
    assert bound_by_name.validate({"a": 1}) == {"a": 1, "b": "x"}
    assert schema_of(Job()).validate({"n": 1}) == {"n": 1.0}


def test_from_fields_builds_the_same_schema() -> None:
    fields = [InputField("a", int, True, MISSING), InputField("b", str, False, "x")]
    schema = InputSchema.from_fields(fields)
    assert schema.validate({"a": 1}) == {"a": 1, "b": "x"}
    assert list(schema.fields.values()) == fields


def test_optional_field_without_default_is_left_out() -> None:
    schema = InputSchema.from_fields([InputField("a", int, False, MISSING)])
    assert schema.validate({}) == {}
    assert schema.validate({"a": 2}) == {"a": 2}
    assert schema.describe() == {"a": {"type": "integer", "required": False}}


def test_from_fields_refuses_duplicate_names() -> None:
    field = InputField("a", int, True, MISSING)
    with pytest.raises(RegistrationError, match="twice"):
        InputSchema.from_fields([field, field])


def test_missing_is_a_copy_safe_singleton() -> None:
    assert copy.deepcopy(MISSING) is MISSING
    assert copy.copy(MISSING) is MISSING
    assert repr(MISSING) == "MISSING"


# --------------------------------------------------------------------------- describe / JSON Schema


def test_describe_matches_the_spec_example() -> None:
    def wf(param1: str, param2: int = 10) -> None: ...

    assert schema_of(wf).describe() == {
        "param1": {"type": "string", "required": True},
        "param2": {"type": "integer", "required": False, "default": 10},
    }


def test_describe_adds_items_enum_nullable_and_properties() -> None:
    def wf(
        nums: list[int],
        mode: Literal["a", "b"] = "a",
        color: Color = Color.RED,
        limit: int | None = None,
        point: Point | None = None,
    ) -> None: ...

    described = schema_of(wf).describe()
    assert described["nums"] == {"type": "array", "items": {"type": "integer"}, "required": True}
    assert described["mode"] == {
        "type": "string",
        "enum": ["a", "b"],
        "required": False,
        "default": "a",
    }
    assert described["color"]["enum"] == ["red", "blue"]
    assert described["color"]["default"] == "red"
    assert described["limit"] == {
        "type": "integer",
        "nullable": True,
        "required": False,
        "default": None,
    }
    assert described["point"]["properties"] == {
        "x": {"type": "integer", "required": True},
        "y": {"type": "integer", "required": True},
        "label": {"type": "string", "required": False},
    }


NOT_JSON = object()


def test_describe_omits_defaults_that_are_not_json() -> None:
    def wf(when: Any = NOT_JSON) -> None: ...

    assert schema_of(wf).describe() == {"when": {"type": "any", "required": False}}


def test_describe_returns_a_copy_callers_may_change() -> None:
    schema = schema_of(one_int)
    schema.describe()["a"]["type"] = "changed"
    assert schema.describe()["a"]["type"] == "integer"


def test_json_schema_is_a_closed_object_schema() -> None:
    def wf(a: int, config: Config, b: list[str] | None = None) -> None: ...

    schema = schema_of(wf).json_schema()
    assert schema["type"] == "object"
    assert schema["required"] == ["a", "config"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"] == {"type": "integer"}
    assert schema["properties"]["b"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
        "default": None,
    }
    config = schema["properties"]["config"]
    assert config["required"] == ["name"]
    assert config["properties"]["depth"] == {"type": "integer", "default": 2}
    assert config["additionalProperties"] is False


def test_json_schema_of_recursive_dataclass_terminates() -> None:
    schema = type_json_schema(Tree)
    assert schema["properties"]["children"]["items"] == {"type": "object", "title": "Tree"}


def test_type_json_schema_of_unknown_type_is_anything() -> None:
    assert type_json_schema(complex) == {}
    assert type_json_schema(Any) == {}


def test_output_schema_from_return_annotation() -> None:
    def plain(): ...

    def typed() -> dict[str, int]:
        return {}

    async def streaming() -> AsyncIterator[str]:
        yield "x"

    assert output_schema(plain) == {"result": {}}
    assert output_schema(typed) == {
        "result": {"type": "object", "additionalProperties": {"type": "integer"}}
    }
    assert output_schema(streaming) == {"result": {"type": "array", "items": {"type": "string"}}}


# --------------------------------------------------------------------------- coerce_text


@pytest.mark.parametrize(
    ("annotation", "text", "value"),
    [
        (int, "10", 10),
        (int, "-3", -3),
        (float, "1.5", 1.5),
        (float, "2", 2.0),
        (float, "1e3", 1000.0),
        (str, "10", "10"),
        (Any, "x", "x"),
        (Optional[int], "7", 7),  # noqa: UP045
        (int | None, "7", 7),
        (Literal["a", "b"], "b", "b"),
        (Literal[1, 2], "2", 2),
        (Color, "blue", Color.BLUE),
        (Level, "2", Level.HIGH),
        (int | str, "5", 5),
        (int | str, "five", "five"),
        (list[int], "[1, 2]", [1, 2]),
    ],
)
def test_coerce_text_converts_to_the_annotated_type(annotation: Any, text: str, value: Any) -> None:
    out = coerce_text(annotation, text, "q")
    assert out == value
    assert type(out) is type(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("true", "1", "yes", "on", "TRUE", "On")]
    + [(t, False) for t in ("false", "0", "no", "off", "False")],
)
def test_coerce_text_reads_booleans(text: str, value: bool) -> None:
    assert coerce_text(bool, text, "flag") is value


@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (int, "1.5", "integer"),
        (int, "", "integer"),
        (int, " 1", "integer"),
        (int, "1_000", "integer"),
        (int, "\u0661", "integer"),  # an Arabic-Indic digit: int() would accept it
        (float, "nan", "number"),
        (float, "1e999", "number"),
        (float, "abc", "number"),
        (bool, "maybe", "boolean"),
        (Literal["a"], "b", 'one of ["a"]'),
        (Color, "RED", 'one of ["red", "blue"]'),
        (list[int], "not json", "array"),
    ],
)
def test_coerce_text_refuses_bad_text_naming_the_field(
    annotation: Any, text: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as info:
        coerce_text(annotation, text, "limit")
    assert info.value.message == "Invalid parameter: limit"
    assert info.value.details["field"] == "limit"
    assert info.value.details["expected"] == expected
    assert info.value.details["received"] == "string"


def test_coerce_text_checks_json_containers_with_paths() -> None:
    with pytest.raises(ValidationError) as info:
        coerce_text(list[int], '[1, "x"]', "ids")
    assert info.value.details["field"] == "ids[1]"


def test_coerce_text_result_passes_validate() -> None:
    def wf(color: Color, config: Config) -> None: ...

    schema = schema_of(wf)
    inputs = {
        "color": coerce_text(Color, "red", "color"),
        "config": coerce_text(Config, '{"name": "n"}', "config"),
    }
    assert schema.validate(inputs) == {"color": Color.RED, "config": Config(name="n")}


# --------------------------------------------------------------------------- json_type_name


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("s", "string"),
        (1, "integer"),
        (1.0, "number"),
        (True, "boolean"),
        (None, "null"),
        ([], "array"),
        ((), "array"),
        ({}, "object"),
        (Color.RED, "string"),
        (Level.LOW, "integer"),
        (b"x", "bytes"),
    ],
)
def test_json_type_name(value: Any, name: str) -> None:
    assert json_type_name(value) == name


@pytest.mark.parametrize(("value", "name"), [(1, "number"), (1.5, "number"), (True, "boolean")])
def test_received_type_name_has_one_number_type(value: Any, name: str) -> None:
    assert received_type_name(value) == name


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def wide(
    a: int,
    b: float,
    c: list[int],
    d: Config,
    e: Literal["x", 1, None] = None,
    f: dict[str, Tree] | None = None,
    g: Color | int = 0,
    h: Point | None = None,
    i: bool = False,
) -> None: ...


WIDE = schema_of(wide)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefghiz"), json_values, max_size=10) | json_values)
def test_validate_raises_only_validation_error_on_arbitrary_json(inputs: Any) -> None:
    try:
        out = WIDE.validate(inputs)
    except ValidationError as exc:
        assert exc.details["errors"]
        assert exc.details["field"] == exc.details["errors"][0]["field"]
    else:
        assert set(out) == set(WIDE.fields)


def non_integral(x: float) -> bool:
    return not x.is_integer()


# Integral floats (1.0) are left out: JSON Schema calls them integers, we do not (on purpose).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False).filter(non_integral)
    | st.sampled_from(["x", "red", "n"])
)
jsonish = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "depth", "tags", "x", "y", "label", "value", "children"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=12,
)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False).filter(non_integral)
trees = st.recursive(
    st.fixed_dictionaries({"value": st.integers()}),
    lambda children: st.fixed_dictionaries(
        {"value": st.integers()}, optional={"children": st.lists(children, max_size=3)}
    ),
    max_leaves=6,
)
valid_wide = st.fixed_dictionaries(
    {
        "a": st.integers(),
        "b": numbers,
        "c": st.lists(st.integers(), max_size=4),
        "d": st.fixed_dictionaries(
            {"name": st.text(max_size=5)},
            optional={"depth": st.integers(), "tags": st.lists(st.text(max_size=3), max_size=3)},
        ),
    },
    optional={
        "e": st.sampled_from(["x", 1, None]),
        "f": st.none() | st.dictionaries(st.text(max_size=3), trees, max_size=2),
        "g": st.sampled_from(["red", "blue"]) | st.integers(),
        "h": st.none()
        | st.fixed_dictionaries(
            {"x": st.integers(), "y": st.integers()}, optional={"label": st.text(max_size=3)}
        ),
        "i": st.booleans(),
    },
)


def json_schema_accepts(inputs: Any) -> bool:
    jsonschema = pytest.importorskip("jsonschema")
    return bool(jsonschema.Draft202012Validator(WIDE.json_schema()).is_valid(inputs))


def we_accept(inputs: Any) -> bool:
    try:
        WIDE.validate(inputs)
    except ValidationError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(valid_wide)
def test_validate_accepts_well_typed_inputs_and_so_does_its_json_schema(inputs: Any) -> None:
    out = WIDE.validate(inputs)
    assert isinstance(out["d"], Config)
    assert json_schema_accepts(inputs)


@settings(max_examples=400, deadline=None)
@given(valid_wide, st.sampled_from("abcdefghiz"), jsonish)
def test_validate_agrees_with_its_own_json_schema(base: Any, key: str, value: Any) -> None:
    inputs = {**base, key: value}
    assert we_accept(inputs) == json_schema_accepts(inputs)


@given(st.integers(), st.integers())
def test_validate_passes_any_pair_of_ints(a: int, b: int) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    assert schema_of(add).validate({"a": a, "b": b}) == {"a": a, "b": b}
