"""A suite app for the OpenAPI tests: diverse workflows (sync, async, generator, DAG, pydantic,
Literal, Enum, dataclass, nullable and list inputs), names that collide once sanitised, and
custom endpoints. Served with ``python -m nexus_aio serve --app openapi_suite_app:app`` (cwd:
tests/) for schemathesis, and imported by the document tests.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from pydantic import BaseModel, Field

from nexus_aio import Nexus, Query, Workflow


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Note:
    text: str
    stars: int = 0


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Address(BaseModel):
    street: str = Field(max_length=50)
    zip_code: str = Field(pattern=r"^[0-9]{5}$")


class Customer(BaseModel):
    name: str
    address: Address
    tags: list[str] = []


WORKFLOWS: list[tuple[str, object]] = []


def workflow(name: str):
    def add(fn):
        WORKFLOWS.append((name, fn))
        return fn

    return add


@workflow("my-workflow")
async def my_workflow_dash(a: int) -> int:
    """Dash: takes a."""
    return a


@workflow("my_workflow")
async def my_workflow_underscore(b: str) -> str:
    """Underscore: takes b."""
    return b


@workflow("a.b")
def a_dot_b(dotted: bool = False) -> bool:
    return dotted


@workflow("a_b")
def a_underscore_b(plain: float = 1.5) -> float:
    return plain


@workflow("A")
def upper_a(big: int = 1) -> int:
    return big


@workflow("a")
def lower_a(small: int = 2) -> int:
    return small


@workflow("batch")  # execute_Batch: the batch plugin's operation is execute_batch
def batch_named(count: int = 0) -> int:
    return count


@workflow("hello world")
def hello_world(who: str = "world") -> str:
    return f"hello {who}"


@workflow("nullable")
def nullable(x: int = None, y: str | None = None, z: float | None = 1.0) -> dict:  # type: ignore[assignment]  # noqa: RUF013
    """``x: int = None`` accepts null."""
    return {"x": x, "y": y, "z": z}


@workflow("choices")
def choices(
    size: Literal["s", "m", "l"], color: Color = Color.RED, flags: list[bool] | None = None
) -> dict:
    return {"size": size, "color": color.value, "flags": flags or []}


@workflow("shapes")
def shapes(
    point: Point, points: list[Point] | None = None, weights: dict[str, float] | None = None
) -> dict:
    return {"x": point.x, "n": len(points or [])}


@workflow("customer")
async def customer(customer: Customer, notes: list[str] | None = None) -> dict:
    return {"name": customer.name, "zip": customer.address.zip_code, "notes": len(notes or [])}


@workflow("numbers")
def numbers(values: list[int], scale: float = 1.0) -> list[float]:
    return [v * scale for v in values[:100]]


@workflow("ticks")
async def ticks(n: int = 3) -> AsyncIterator[int]:
    """Async generator: yields min(n, 5) numbers."""
    for i in range(max(0, min(n, 5))):
        yield i


@workflow("words")
def words(text: str = "a b c") -> Iterator[str]:
    """Sync generator: one word at a time."""
    yield from text.split()[:20]


def _double(value: int) -> dict:
    return {"doubled": value * 2}


def _describe(doubled: int, label: str = "n") -> dict:
    return {"label": label, "doubled": doubled}


dag = Workflow("dag-flow", "Double then describe")
dag.add_node("double", _double)
dag.add_node("describe", _describe)
dag.connect("double", "describe", {"doubled": "doubled"})


async def get_item(
    item_id: int,
    q: str = Query("x", max_length=10, pattern="^[a-z]*$"),
    limit: int = Query(10, ge=1, le=50),
) -> dict:
    """Read an item."""
    return {"item_id": item_id, "q": q, "limit": limit}


async def add_note(note: Note) -> dict:
    """Add a note (echoed)."""
    return {"text": note.text, "stars": note.stars}


def make_suite_app(**settings: object) -> Nexus:
    """A new app with every suite workflow and endpoint (``settings`` as keyword arguments)."""
    app = Nexus(**{"database": ":memory:", **settings})
    for name, fn in WORKFLOWS:
        app.register(name, fn)
    app.register("dag-flow", dag, rate_limit=600)
    app.endpoint("/items/{item_id}")(get_item)
    app.endpoint("/notes", methods=["POST"])(add_note)
    return app


app = make_suite_app()
