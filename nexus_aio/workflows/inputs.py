"""``InputSchema``: a workflow's inputs, from its parameters, checked per request.

A workflow's inputs are its parameters: the type hint says what JSON is acceptable, the default
says whether the input is optional. The same fields also give the ``/schema`` description and
the JSON Schema OpenAPI documents.
"""

from __future__ import annotations

import copy
import enum
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import NoneType
from typing import Any, Final, Optional

from nexus_aio.errors import RegistrationError
from nexus_aio.workflows.checks import Compiler, accept_any
from nexus_aio.workflows.defs import hoist_to_root
from nexus_aio.workflows.describe import describe_field
from nexus_aio.workflows.files import file_input_kind
from nexus_aio.workflows.hints import accepts_none, callable_hints, strip_annotation
from nexus_aio.workflows.jsonschema import add_annotations, type_json_schema
from nexus_aio.workflows.jsontypes import MISSING, received_type_name
from nexus_aio.workflows.models import involves_models
from nexus_aio.workflows.problems import Problem, add_segment, validation_error

__all__ = ["InputField", "InputSchema"]

_IMMUTABLE_DEFAULTS: Final = (str, int, float, bool, bytes, NoneType, enum.Enum, tuple, frozenset)


@dataclass(frozen=True, slots=True)
class InputField:
    """One workflow input: its name, annotation, and default (``MISSING`` when required)."""

    name: str
    annotation: Any
    required: bool
    default: Any
    description: str | None = None


class InputSchema:
    """The inputs of one workflow, compiled to checks once so ``validate`` is cheap per request."""

    fields: dict[str, InputField]
    file_inputs: dict[str, str]
    """The file inputs (sent as multipart parts): name -> "one" (``File``) or "list"."""

    def __init__(self, fields: Iterable[InputField]) -> None:
        self.fields = {}
        self.file_inputs = {}
        compiler = Compiler()
        plan = []
        for fld in fields:
            if fld.name in self.fields:
                raise RegistrationError(f"parameter {fld.name!r} is declared twice")
            self.fields[fld.name] = fld
            kind = file_input_kind(fld.annotation)
            if kind is not None:
                self.file_inputs[fld.name] = kind
            compiled = compiler.compile(fld.annotation, f"parameter {fld.name!r}")
            check = None if compiled.check is accept_any else compiled.check
            # An optional field without a default is left out, so the callee's own default applies.
            default = MISSING if fld.required else fld.default
            copy_default = default is not MISSING and not isinstance(default, _IMMUTABLE_DEFAULTS)
            plan.append((fld.name, check, fld.required, default, copy_default, compiled.expected))
        self._plan = tuple(plan)
        self._describe: dict[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"InputSchema({list(self.fields)})"

    @classmethod
    def from_callable(
        cls,
        fn: Callable[..., Any],
        *,
        skip: Callable[[inspect.Parameter, Any], bool] | None = None,
    ) -> InputSchema:
        """The inputs of ``fn``; ``skip(param, annotation)`` marks injected (non-input) params.

        Hints are resolved with ``typing.get_type_hints`` so ``from __future__ import annotations``
        works; an annotation that cannot be resolved is passed to ``skip`` as its string and is
        an error only if the parameter is an input.
        """
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise RegistrationError(f"cannot read the signature of {fn!r}: {exc}") from None
        hints = callable_hints(fn)
        fields = []
        for name, param in signature.parameters.items():
            annotation = hints.get(name, param.annotation)
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise RegistrationError(
                    f"parameter {name!r}: *args/**kwargs cannot be inputs; "
                    "declare each input as a named parameter"
                )
            if skip is not None and skip(param, annotation):
                continue
            if param.kind is param.POSITIONAL_ONLY:
                raise RegistrationError(
                    f"parameter {name!r}: positional-only parameters cannot be inputs "
                    "(inputs are passed by name)"
                )
            if isinstance(annotation, str):
                raise RegistrationError(
                    f"parameter {name!r}: cannot resolve the annotation {annotation!r} "
                    "(is it importable from the function's module?)"
                )
            required = param.default is inspect.Parameter.empty
            stripped_description = strip_annotation(annotation)[1]
            if annotation is inspect.Parameter.empty:
                annotation = Any
            default = MISSING if required else param.default
            if default is None and not accepts_none(annotation):
                # `x: int = None` means `int | None` (PEP 484's implicit Optional): null is valid
                annotation = Optional[annotation]  # noqa: UP045 (a runtime value, not a hint)
            fields.append(InputField(name, annotation, required, default, stripped_description))
        return cls(fields)

    @classmethod
    def from_fields(cls, fields: Iterable[InputField]) -> InputSchema:
        """A schema from ready fields (a DAG's inputs merged from its nodes)."""
        return cls(fields)

    def validate(self, inputs: Any) -> dict[str, Any]:
        """The keyword arguments for the workflow: checked, defaults filled in, dataclasses built.

        Raises ``ValidationError`` listing every problem (missing, unknown, wrong type).
        """
        if not isinstance(inputs, dict):
            raise validation_error(
                [Problem("type", "object", received_type_name(inputs), None, "inputs")]
            )
        problems: list[Problem] = []
        out: dict[str, Any] = {}
        found = 0
        for name, check, required, default, copy_default, expected in self._plan:
            if name in inputs:
                found += 1
                if check is None:
                    out[name] = inputs[name]
                    continue
                before = len(problems)
                try:
                    out[name] = check(inputs[name], problems)
                except RecursionError:  # a recursive dataclass fed a very deep document
                    del problems[before:]
                    problems.append(Problem("invalid", expected, "object", "nested too deeply"))
                if len(problems) != before:
                    add_segment(problems, before, name)
            elif required:
                problems.append(Problem("missing", expected, "missing", None, name))
            elif copy_default:
                out[name] = copy.deepcopy(default)
            elif default is not MISSING:
                out[name] = default
        if found != len(inputs):
            self._report_unknown(inputs, problems)
        if problems:
            raise validation_error(problems)
        return out

    def _report_unknown(self, inputs: dict[str, Any], problems: list[Problem]) -> None:
        for key, value in inputs.items():
            if key not in self.fields:
                problems.append(
                    Problem("unknown", "nothing", received_type_name(value), None, str(key))
                )

    def describe(self) -> dict[str, dict[str, Any]]:
        """The ``/schema`` "inputs" mapping: per input its type, ``required`` and ``default``;
        an input holding pydantic models also gets its full JSON Schema as ``json_schema``."""
        if self._describe is None:
            described = {}
            for name, f in self.fields.items():
                schema = type_json_schema(f.annotation)
                described[name] = describe_field(schema, f.required, f.default, f.description)
                if involves_models(f.annotation):
                    described[name]["json_schema"] = schema
            self._describe = described
        return copy.deepcopy(self._describe)

    def json_schema(self, *, include_files: bool = False) -> dict[str, Any]:
        """A JSON Schema (OpenAPI 3.1) for the inputs object: unknown inputs are not allowed.
        File inputs are multipart parts, never JSON, so they are left out unless
        ``include_files`` (a form, such as the playground's, describes every input: a file is
        ``{"type": "string", "format": "binary"}``)."""
        properties = {}
        fields = {
            n: f for n, f in self.fields.items() if include_files or n not in self.file_inputs
        }
        for name, fld in fields.items():
            prop = type_json_schema(fld.annotation)
            add_annotations(prop, fld.required, fld.default, fld.description)
            properties[name] = prop
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        required = [name for name, fld in fields.items() if fld.required]
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        return hoist_to_root(schema)  # pydantic models' $defs, from any input, at the root
