"""The fallback error renderer: any exception becomes the documented envelope.

It is ``trylast`` so a plugin's ``handle_exception`` can answer first.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import NexusError
from ..hookspecs import hookimpl
from ..keys import EXECUTION_ID
from ..web_responses import error_response


@hookimpl(trylast=True)
def handle_exception(nexus: Any, request: web.Request, exception: BaseException) -> web.Response:
    if not isinstance(exception, NexusError):
        exception = NexusError("Internal server error")
    return error_response(exception, request.get(EXECUTION_ID))
