"""Commands: ``create-user`` (the first user, or more), ``worker``, ``serve`` (web only), ``run`` (both).

Use them as ``python -m src.app <command>`` or ``flask --app src.app <command>``; ``flask --app src.app db
upgrade`` applies the migrations (the app also does that on start).
"""

from __future__ import annotations

import logging
import signal
import sys

import click
from flask import Flask

from src.app.accounts import create_user
from src.app.extensions import db
from src.app.supervise import Supervisor


def serve(app: Flask, host: str, port: int, threads: int = 8) -> None:
    """Serve ``app`` with waitress (a production WSGI server; put a reverse proxy in front for TLS)."""
    from waitress import serve as waitress_serve

    click.echo(f"serving on http://{host}:{port}")
    waitress_serve(app, host=host, port=port, threads=threads)


def register_cli(app: Flask) -> None:
    """Attach the commands to ``app.cli``."""

    @app.cli.command("create-user")
    @click.argument("username")
    @click.password_option()
    def create_user_cmd(username: str, password: str) -> None:
        """Create a user (asks for the password twice)."""
        try:
            create_user(username, password)
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"user {username} created")

    @app.cli.command("worker")
    def worker_cmd() -> None:
        """Run queued jobs until interrupted (SIGINT/SIGTERM finish the running job's bookkeeping)."""
        from src.app.worker import Worker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
        worker = Worker(app)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
        click.echo(f"worker {worker.id}: {app.config['WORKER_SLOTS']} slot(s), database {db.engine.url!r}")
        try:
            worker.run_forever()
        except KeyboardInterrupt:
            worker.stop.set()

    @app.cli.command("serve")
    @click.option("--host", default=None, help="bind address (default 127.0.0.1: this machine only)")
    @click.option("--port", default=None, type=int)
    def serve_cmd(host: str | None, port: int | None) -> None:
        """Serve the web app only (run ``worker`` separately)."""
        serve(app, host or app.config["HOST"], port or app.config["PORT"])

    @app.cli.command("run")
    @click.option("--host", default=None, help="bind address (default 127.0.0.1: this machine only)")
    @click.option("--port", default=None, type=int)
    def run_cmd(host: str | None, port: int | None) -> None:
        """Web app and a supervised worker together (the embedded setup; a dead worker is restarted)."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s app %(levelname)s %(message)s")
        supervisor = Supervisor().start()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the worker too (finally below)
        try:
            serve(app, host or app.config["HOST"], port or app.config["PORT"])
        finally:
            supervisor.stop()  # the worker stops its running step and requeues the job
