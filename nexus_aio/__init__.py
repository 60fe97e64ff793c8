"""nexus_aio: registered workflows become a complete REST API on aiohttp."""

__version__ = "0.1.0"

from .context import Context
from .errors import (
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
from .hookspecs import hookimpl
from .nexus import Nexus
from .query import Query
from .workflow import Workflow

__all__ = [
    "BadRequest",
    "Context",
    "Forbidden",
    "Nexus",
    "NexusError",
    "Query",
    "RateLimitExceeded",
    "ServiceUnavailable",
    "Timeout",
    "Unauthorized",
    "ValidationError",
    "Workflow",
    "WorkflowExecutionError",
    "WorkflowNotFound",
    "__version__",
    "hookimpl",
]
