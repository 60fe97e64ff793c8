"""The OpenAPI 3.1 document, built from the registry and the route table."""

from nexus_aio.openapi.document import OPENAPI_VERSION, RouteInfo, build_openapi

__all__ = ["OPENAPI_VERSION", "RouteInfo", "build_openapi"]
