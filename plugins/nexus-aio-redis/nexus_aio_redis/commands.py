"""``python -m nexus_aio worker``: run queued async executions on this machine.

Added to the CLI by the plugin's ``register_commands``; with the plugin disabled
(``NEXUS_DISABLE_PLUGINS=redis``) the command does not exist. The worker needs ``redis_url``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from nexus_aio.cli import add_source_args, load_nexus
from nexus_aio.logs import configure_logging

from .dispatch import run_worker


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    worker = subparsers.add_parser(
        "worker", help="run async executions from the Redis queue (nexus-aio-redis)"
    )
    add_source_args(worker)
    worker.add_argument("--log-level", help="log level (default INFO)")
    worker.set_defaults(handler=worker_command)


def worker_command(args: argparse.Namespace) -> int:
    """Load the app as ``serve`` would, then run the arq worker until SIGINT/SIGTERM."""
    app, _ = load_nexus(args)
    configure_logging(args.log_level or app.settings.log_level, app.settings.log_format)
    asyncio.run(run_worker(app))
    return 0
