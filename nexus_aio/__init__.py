"""nexus_aio: registered workflows become a complete REST API on aiohttp."""

# First, so a module that reads the version from the package root while it loads finds it.
from nexus_aio.version import __version__  # isort: skip

from nexus_aio.context import Context
from nexus_aio.errors import (
    BadRequest,
    Forbidden,
    NexusError,
    RateLimitExceeded,
    ServiceUnavailable,
    Timeout,
    Unauthorized,
    ValidationError,
    WorkflowExecutionError,
    WorkflowNotFound,
)
from nexus_aio.hookspecs import hookimpl
from nexus_aio.nexus import Nexus
from nexus_aio.query import Query
from nexus_aio.settings import Setting
from nexus_aio.workflows.files import File
from nexus_aio.workflows.retry import RetryPolicy
from nexus_aio.workflows.workflow import Workflow

__all__ = [
    "BadRequest",
    "Context",
    "File",
    "Forbidden",
    "Nexus",
    "NexusError",
    "Query",
    "RateLimitExceeded",
    "RetryPolicy",
    "ServiceUnavailable",
    "Setting",
    "Timeout",
    "Unauthorized",
    "ValidationError",
    "Workflow",
    "WorkflowExecutionError",
    "WorkflowNotFound",
    "__version__",
    "hookimpl",
]
