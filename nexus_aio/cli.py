"""``python -m nexus_aio [serve|run|list|plugins|openapi]`` and the commands plugins add.

The parser is built from the app the command will use, so the plugins it has enabled decide
which commands exist: ``--app MODULE:ATTR`` is read first (the app's own plugins count), otherwise
a ``Nexus()`` configured from the environment (``NEXUS_DISABLE_PLUGINS`` honoured). Plugins add
subcommands through the ``register_commands`` hook and name their handler with
``parser.set_defaults(handler=fn)``; ``fn(args)`` returns the exit status. A plugin command gets
the app with :func:`load_nexus` and takes ``--app``/``--workflows`` with :func:`add_source_args`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from nexus_aio.errors import ConfigurationError, NexusError, RegistrationError
from nexus_aio.nexus import Nexus


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--app MODULE:ATTR`` and ``--workflows DIR``: where :func:`load_nexus` finds the app."""
    parser.add_argument(
        "--app", help="MODULE:ATTR of a Nexus app (imported from the current directory)"
    )
    parser.add_argument("--workflows", metavar="DIR", help="discover *.py workflow files in DIR")


def build_parser(nexus: Nexus) -> argparse.ArgumentParser:
    """The core commands, then those ``nexus``'s plugins add (a name taken twice fails)."""
    parser = argparse.ArgumentParser(
        prog="python -m nexus_aio", description="Serve registered workflows as a REST API."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the API (the default command)")
    add_source_args(serve)
    serve.add_argument("--host", help="bind address (default: api_host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: api_port, 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument("--log-format", choices=["text", "json"], help="log line format")
    serve.add_argument("--log-level", help="log level (default INFO)")
    serve.set_defaults(handler=cmd_serve)
    run = sub.add_parser("run", help="run one workflow without a server and print the envelope")
    run.add_argument("name")
    run.add_argument("--inputs", default="{}", help="inputs as a JSON object")
    run.add_argument("--session-id")
    add_source_args(run)
    run.set_defaults(handler=cmd_run)
    lst = sub.add_parser("list", help="list workflows")
    add_source_args(lst)
    lst.set_defaults(handler=cmd_list)
    plugins = sub.add_parser("plugins", help="list installed plugins with version and hooks")
    add_source_args(plugins)
    plugins.set_defaults(handler=cmd_plugins)
    openapi = sub.add_parser("openapi", help="print the OpenAPI document")
    add_source_args(openapi)
    openapi.set_defaults(handler=cmd_openapi)
    nexus.hooks.register_commands(sub)
    return parser


# The app ``main`` loaded to build the parser, handed on to the command's ``load_nexus``.
_PRELOADED = "_nexus_app"


def load_nexus(args: argparse.Namespace) -> tuple[Nexus, str]:
    """The app to act on and a sentence saying where its workflows came from.

    The app is the one the parser was built from (``--app``, else a ``Nexus()`` from the
    environment); without ``--app``, workflows come from ``--workflows DIR``, else
    ``./workflows``, else the bundled examples. Call it once per command.
    """
    from nexus_aio.discovery import load_app, load_directory, load_examples

    target = getattr(args, "app", None)
    app = getattr(args, _PRELOADED, None)
    if app is None:
        app = load_app(target) if target else Nexus()
    source = f"app {target}" if target else ""
    directory = getattr(args, "workflows", None)
    if directory:
        names = load_directory(app, directory)
        source = f"workflows from {directory}/ ({len(names)})"
    elif not target:
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
    settings.check_features()  # before announcing anything or starting --workers processes
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
    leave_now(0)
    return 0  # pragma: no cover


def leave_now(code: int) -> None:
    """End the serving process now that the server stopped and everything is saved: run the
    atexit handlers and flush, but skip the interpreter's teardown (a second or more of
    freeing modules on a busy machine) and the join of sync workflow threads still running
    (their runs read ``interrupted``), so SIGTERM exits within ``shutdown_timeout`` + 2 s."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_run(args: argparse.Namespace) -> int:
    """Run one workflow through the execution service on the configured stores (so the
    execution can be looked up later, e.g. by a server on the same database)."""
    from nexus_aio.envelope import error_envelope
    from nexus_aio.errors import WorkflowNotFound
    from nexus_aio.execution.service import RunRequest

    app, _ = load_nexus(args)
    try:
        inputs = orjson.loads(args.inputs)
    except orjson.JSONDecodeError as exc:
        print(f"--inputs is not valid JSON: {exc}", file=sys.stderr)
        return 2
    request = RunRequest(args.name, inputs, session_id=args.session_id)

    async def go() -> dict[str, Any]:
        async with app.open_service() as service:
            return await service.run(request)

    try:
        envelope = asyncio.run(go())
    except NexusError as exc:
        shown = None if isinstance(exc, WorkflowNotFound) else request.execution_id
        _print_json(error_envelope(exc, shown))
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


def _parser_app(argv: Sequence[str]) -> tuple[Nexus, str | None]:
    """The app whose plugins decide the commands: ``--app``'s, read ahead of the parser."""
    from nexus_aio.discovery import load_app

    ahead = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ahead.add_argument("--app")
    target = ahead.parse_known_args(argv)[0].app
    return (load_app(target) if target else Nexus()), target


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")
    try:
        app, target = _parser_app(argv)
        parser = build_parser(app)
    except (ConfigurationError, RegistrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "app", None) == target:
        setattr(args, _PRELOADED, app)
    try:
        return handler(args) or 0
    except (ConfigurationError, RegistrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
