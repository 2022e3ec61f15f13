"""Blueprints: auth (login, account), studio (the three steps), files (owner-only downloads), api (JSON)."""

from __future__ import annotations

from flask import Flask, abort
from flask_login import current_user

from src.app.extensions import db


def owned(model, obj_id: str, user_id: str | None = None):
    """The row ``obj_id`` of ``model`` if ``user_id`` (default: the logged-in user) owns it; 404 otherwise
    (no hint it exists)."""
    obj = db.session.get(model, obj_id) if obj_id and len(obj_id) <= 36 else None
    if obj is None or obj.user_id != (user_id or current_user.id):
        abort(404)
    return obj


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    from src.app.views.api import bp as api
    from src.app.views.api import v1 as api_v1
    from src.app.views.auth import bp as auth
    from src.app.views.files import bp as files
    from src.app.views.studio import bp as studio

    for bp in (auth, studio, files, api, api_v1):
        app.register_blueprint(bp)
