"""The OpenAPI 3.1 document, built from the registry and the route table.

What plugin authors use in their ``openapi_spec`` hook is exported here: :func:`error_response`
and :func:`error_responses` (the error envelope as a response), :func:`operations` (every
operation, to edit), :func:`add_responses` (a response on every operation) and :func:`ref` (a
component schema reference).
"""

from nexus_aio.openapi.components import (
    add_responses,
    error_response,
    error_responses,
    operations,
    ref,
)
from nexus_aio.openapi.document import OPENAPI_VERSION, build_openapi
from nexus_aio.openapi.routes import RouteInfo

__all__ = [
    "OPENAPI_VERSION",
    "RouteInfo",
    "add_responses",
    "build_openapi",
    "error_response",
    "error_responses",
    "operations",
    "ref",
]
