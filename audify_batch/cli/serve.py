"""``audify serve``: the review desk, a local web app over a labeling output."""

from __future__ import annotations

import argparse
import getpass
import socket
from typing import Any

from audify_batch.app import DEFAULT_HOST, DEFAULT_PORT
from audify_batch.cli.console import print_lines
from audify_batch.cli.label import MODEL_DEFAULT, MODEL_HELP


def default_annotator() -> str:
    """The name verdicts are stored under unless --annotator says: the login name."""
    try:
        return getpass.getuser() or "reviewer"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "reviewer"


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="the review desk: browse OUT, listen to segments, record verdicts (a local web app)",
        description="Serve a web app over OUT (local or s3://): an overview, a segment table with filters, "
        "recording timelines, segment pages (audio, figures, similar segments) and review queues; "
        "verdicts are appended to OUT/annotations. On an address other than localhost every request "
        "needs the token printed at start.",
    )
    serve.add_argument("out", help="output root written by audify label (local or s3://)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free one)")
    serve.add_argument("--model", default=MODEL_DEFAULT, help=MODEL_HELP + "; draws the figures")
    serve.add_argument(
        "--annotator", default=None, help="name stored with each verdict (default: login name)"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (an address in use is an OSError, one line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port} ({error.strerror})") from error
    sock.listen(128)
    return sock


def startup_line(host: str, port: int, token: str | None) -> str:
    """``audify serve: URL (token ...)``: the URL to open, with the token where one is needed."""
    shown = f"[{host}]" if ":" in host else host
    if token is None:
        return f"audify serve: http://{shown}:{port}/ (token not needed on localhost)"
    return f"audify serve: http://{shown}:{port}/?token={token} (token {token})"


def serve_app(app: Any, sock: socket.socket) -> None:
    """Run ``app`` (a FastAPI application) on ``sock`` until Ctrl-C."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def run_serve(args: argparse.Namespace) -> int:
    """Build the desk and serve it; the web stack is imported here, not by every audify command."""
    from audify_batch.app.security import is_loopback
    from audify_batch.app.server import AppSettings, create_app

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0 to 65535, got {args.port}")
    settings = AppSettings(
        out=args.out,
        model=args.model,
        host=args.host,
        port=args.port,
        annotator=args.annotator or default_annotator(),
    )
    app = create_app(settings)
    sock = bind(args.host, args.port)
    try:
        token = app.state.guard.token
        print_lines(startup_line(args.host, sock.getsockname()[1], None if is_loopback(args.host) else token))
        serve_app(app, sock)
    finally:
        sock.close()
    return 0
