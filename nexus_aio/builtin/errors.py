"""The fallback error renderer: any exception becomes the documented envelope.

It is ``trylast`` so a plugin's ``handle_exception`` can answer first.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nexus_aio.errors import NexusError
from nexus_aio.hookspecs import hookimpl
from nexus_aio.web.keys import EXECUTION_ID
from nexus_aio.web.responses import error_response


@hookimpl(trylast=True)
def handle_exception(nexus: Any, request: web.Request, exception: BaseException) -> web.Response:
    if not isinstance(exception, NexusError):
        exception = NexusError("Internal server error")
    return error_response(exception, request.get(EXECUTION_ID))
