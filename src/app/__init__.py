"""The avatar studio: a Flask app from upload to download (preprocess, train, reenact, export).

``create_app()`` builds the web app (blueprints, database, login, CSRF); ``python -m src.app`` serves it
with its worker on 127.0.0.1:5000 (see README, "The avatar studio"). Jobs run the project's entry
points (``train.py``, ``reenact.py``, ``python -m src.preprocess``, ...) as subprocesses, so every job is
an ordinary run folder; the app imports none of the moving internals.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from flask import Flask, render_template, request
from flask_migrate import upgrade
from sqlalchemy import event

from src.app import jobs
from src.app.config import load_settings
from src.app.extensions import csrf, db, login_manager, migrate
from src.app.redact import redact, user_error
from src.app.storage import restrict_permissions
from src.app.views.api import json_error

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def create_app(settings: dict[str, Any] | None = None, upgrade_db: bool = True) -> Flask:
    """Build the app.

    Args:
        settings: config keys overriding defaults and ``AVATAR_APP_*`` environment variables
            (see :mod:`src.app.config`).
        upgrade_db: bring the database schema up to date (Alembic migrations) on start.
    """
    app = Flask(__name__)
    app.config.update(load_settings(settings))
    restrict_permissions(Path(app.config["DATA_DIR"]))  # biometric data: the app's user only
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    csrf.init_app(app)

    from src.app import models
    from src.app.cli import register_cli
    from src.app.views import register_blueprints

    @login_manager.user_loader
    def load_user(session_id: str):
        """The user of a session cookie whose token is still current (logout revokes it)."""
        user_id, _, token = session_id.partition(":")
        user = db.session.get(models.User, user_id) if user_id and len(user_id) <= 36 else None
        if user is None or not token or not hmac.compare_digest(user.session_token, token):
            return None
        return user

    register_blueprints(app)
    app.jinja_env.filters["redact"] = redact  # logs and errors as users see them (no server paths)
    app.jinja_env.filters["user_error"] = user_error
    register_cli(app)

    @app.errorhandler(413)
    def too_large(_e):
        limit = app.config["MAX_CONTENT_LENGTH"] / 1024**2
        msg = f"the upload is larger than the {limit:.0f} MB limit; trim or compress the video"
        return render_template("error.html", code=413, message=msg), 413

    @app.errorhandler(404)
    def not_found(e):
        if request.path.startswith("/api/"):
            return json_error(e)
        return render_template("error.html", code=404, message="not found"), 404

    @app.errorhandler(400)
    def bad_request(e):
        return render_template("error.html", code=400, message=getattr(e, "description", "bad request")), 400

    @app.context_processor
    def worker_status():
        """``worker_online`` for the pages' banner (only for logged-in users)."""
        from flask_login import current_user

        return {"worker_online": jobs.worker_online() if current_user.is_authenticated else True}

    @app.after_request
    def headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
        if upgrade_db:
            upgrade(directory=MIGRATIONS)
    return app


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """SQLite: WAL (web and worker processes read while the other writes) and foreign keys."""
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
