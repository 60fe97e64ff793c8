"""``python -m nexus_aio [serve|run|worker|list|plugins|openapi]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from nexus_aio.errors import ConfigurationError, NexusError, RegistrationError
from nexus_aio.nexus import Nexus


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app", help="MODULE:ATTR of a Nexus app (imported from the current directory)"
    )
    parser.add_argument("--workflows", metavar="DIR", help="discover *.py workflow files in DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nexus_aio", description="Serve registered workflows as a REST API."
    )
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the API (the default command)")
    _add_source_args(serve)
    serve.add_argument("--host", help="bind address (default: api_host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: api_port, 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument("--log-format", choices=["text", "json"], help="log line format")
    serve.add_argument("--log-level", help="log level (default INFO)")
    run = sub.add_parser("run", help="run one workflow without a server and print the envelope")
    run.add_argument("name")
    run.add_argument("--inputs", default="{}", help="inputs as a JSON object")
    run.add_argument("--session-id")
    _add_source_args(run)
    lst = sub.add_parser("list", help="list workflows")
    _add_source_args(lst)
    plugins = sub.add_parser("plugins", help="list installed plugins with version and hooks")
    _add_source_args(plugins)
    worker = sub.add_parser("worker", help="run async executions from the queue (redis plugin)")
    _add_source_args(worker)
    worker.add_argument("--log-level", help="log level (default INFO)")
    openapi = sub.add_parser("openapi", help="print the OpenAPI document")
    _add_source_args(openapi)
    return parser


def load_nexus(args: argparse.Namespace, **kwargs: Any) -> tuple[Nexus, str]:
    """The app to serve and a sentence saying where its workflows came from."""
    from nexus_aio.discovery import load_app, load_directory, load_examples

    if args.app:
        app = load_app(args.app)
        source = f"app {args.app}"
    else:
        app = Nexus(**kwargs)
        source = ""
    if args.workflows:
        names = load_directory(app, args.workflows)
        source = f"workflows from {args.workflows}/ ({len(names)})"
    elif not args.app:
        if Path("workflows").is_dir():
            names = load_directory(app, "workflows")
            source = f"workflows from ./workflows ({len(names)})"
        else:
            names = load_examples(app)
            source = f"the bundled example workflows ({len(names)})"
    return app, source


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    from nexus_aio.logs import configure_logging

    app, source = load_nexus(args)
    settings = app.settings
    configure_logging(args.log_level or settings.log_level, args.log_format or settings.log_format)
    if args.log_format:
        settings.log_format = args.log_format
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    print(f"nexus_aio serving {source} on http://{host}:{port}{settings.api_prefix}", flush=True)
    print(f"workflows: {', '.join(sorted(app.workflows)) or '(none)'}", flush=True)
    if args.workers > 1:
        from nexus_aio.web.workers import serve_workers

        return serve_workers(app, args, host, port)
    app.start(host=host, port=port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run queued async executions; needs the nexus-aio-redis plugin and ``redis_url``."""
    from nexus_aio.logs import configure_logging

    try:
        from nexus_aio_redis.dispatch import run_worker
    except ImportError:
        print("error: the worker needs the nexus-aio-redis plugin", file=sys.stderr)
        return 2
    app, _ = load_nexus(args)
    configure_logging(args.log_level or app.settings.log_level, app.settings.log_format)
    asyncio.run(run_worker(app))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nexus_aio.envelope import error_envelope

    app, _ = load_nexus(args)
    try:
        inputs = orjson.loads(args.inputs)
    except orjson.JSONDecodeError as exc:
        print(f"--inputs is not valid JSON: {exc}", file=sys.stderr)
        return 2

    async def go() -> dict[str, Any]:
        runtime = await app._ensure_runtime()
        try:
            sub = app.submission(args.name, inputs, session_id=args.session_id)
            return await runtime.run_sync(sub)
        finally:
            await app.aclose()

    try:
        envelope = asyncio.run(go())
    except NexusError as exc:
        _print_json(error_envelope(exc))
        return 1
    _print_json(envelope)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app, _ = load_nexus(args)
    app.load_plugin_workflows()
    for name, wf in sorted(app.workflows.items()):
        first = (wf.description or "").strip().splitlines()
        print(f"{name}\t{first[0] if first else ''}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    app, _ = load_nexus(args)
    _print_json(app.hooks.describe())
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from nexus_aio.openapi.document import build_openapi

    app, _ = load_nexus(args)
    app.load_plugin_workflows()
    _print_json(build_openapi(app))
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "run": cmd_run,
    "worker": cmd_worker,
    "list": cmd_list,
    "plugins": cmd_plugins,
    "openapi": cmd_openapi,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigurationError, RegistrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
