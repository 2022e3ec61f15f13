"""``python -m src.app``: web + worker with the embedded SQLite database on http://127.0.0.1:5000.

Also ``python -m src.app create-user NAME``, ``... worker``, ``... serve [--host H --port P]``,
``... db upgrade`` (any command of ``flask --app src.app``).
"""

from __future__ import annotations

import sys

from flask.cli import FlaskGroup

from src.app import create_app


def main(argv: list[str] | None = None) -> None:
    """Run a CLI command of the app; ``run`` (web + worker) when none is given."""
    argv = list(sys.argv[1:] if argv is None else argv) or ["run"]
    cli = FlaskGroup(create_app=create_app, add_default_commands=False, load_dotenv=False)
    cli.main(args=argv, prog_name="python -m src.app")


if __name__ == "__main__":
    main()
