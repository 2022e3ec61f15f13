"""JSON: the pages' status polling (``/api/jobs/<id>``, session cookie) and the scripting API ``/api/v1``.

``/api/v1`` authenticates with a token only (``Authorization: Bearer <token>``, made on the account
page), never with the session cookie, so it needs no CSRF token; every answer is JSON, errors included
(``{"error": "..."}`` with 400, 401, 404, 409 or 429). Routes::

    GET    /api/v1/jobs                          the user's jobs
    GET    /api/v1/jobs/<id>                     one job (status, progress, error)
    DELETE /api/v1/jobs/<id>                     a render and its files
    GET    /api/v1/jobs/<id>/files/<path>        a file of a job (results.json, export/..., orbit/...)
    POST   /api/v1/uploads                       multipart ``video`` [+ ``resolution``]: step 1
    GET    /api/v1/uploads/<id>                  the upload and its preprocessing job
    DELETE /api/v1/uploads/<id>                  the video and everything made from it
    POST   /api/v1/uploads/<id>/avatars          step 2: JSON {name, family, quality, n_identity, ...}
    GET    /api/v1/avatars/<id>                  the avatar, its training job and results
    DELETE /api/v1/avatars/<id>                  the avatar and its files
"""

from __future__ import annotations

import functools

from flask import Blueprint, abort, g, jsonify, request, send_file, url_for
from flask_login import login_required
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from src.app import actions, deletion
from src.app.deletion import BusyError
from src.app.extensions import csrf, db
from src.app.jobs import QueueFullError
from src.app.media import UploadError
from src.app.models import Avatar, Job, Upload, User, hash_token
from src.app.pipeline import RESOLUTIONS
from src.app.storage import job_dir, owned_file
from src.app.views import owned
from src.app.views.files import results

bp = Blueprint("api", __name__, url_prefix="/api")
v1 = Blueprint("api_v1", __name__, url_prefix="/api/v1")
csrf.exempt(v1)


@bp.route("/jobs/<job_id>")
@login_required
def job_status(job_id: str):
    return jsonify(owned(Job, job_id).to_public())


def _error(status: int, message: str):
    return jsonify({"error": message}), status


def json_error(e: HTTPException):
    """An HTTP error as ``{"error": "..."}`` (the API's errors; also unknown ``/api/`` URLs)."""
    messages = {404: "not found", 401: "a valid API token is needed (Authorization: Bearer <token>)"}
    return _error(e.code or 500, messages.get(e.code, e.description or e.name))


for _code in (400, 401, 403, 404, 405, 409, 413, 429, 500):  # by code: the app's own handlers are by code
    v1.register_error_handler(_code, json_error)


def token_required(view):
    """Authenticate the request by its bearer token (401 JSON without a valid one)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        user = (
            db.session.scalar(select(User).where(User.api_token_hash == hash_token(token))) if token else None
        )
        if user is None:
            abort(401)
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped


def _mine(model, obj_id: str):
    return owned(model, obj_id, g.api_user.id)


def _job(job: Job | None) -> dict | None:
    if job is None:
        return None
    out = job.to_public()
    out["url"] = url_for("api_v1.get_job", job_id=job.id)
    return out


def _results(job: Job | None) -> dict:
    if job is None or job.status != "done":
        return {}
    res = results(job)
    if not res:
        return {}
    files = {
        k: url_for("api_v1.job_file", job_id=job.id, relpath=v)
        for k, v in (res.get("files") or {}).items()
        if isinstance(v, str)
    }
    return {**{k: v for k, v in res.items() if k != "files"}, "files": files}


def _upload(up: Upload) -> dict:
    job = db.session.get(Job, up.job_id) if up.job_id else None
    return {
        "id": up.id,
        "filename": up.filename,
        "resolution": up.resolution,
        "video": up.info,
        "created_at": up.created_at.isoformat() if up.created_at else None,
        "job": _job(job),
        "url": url_for("api_v1.get_upload", upload_id=up.id),
    }


def _avatar(av: Avatar) -> dict:
    job = db.session.get(Job, av.job_id) if av.job_id else None
    return {
        "id": av.id,
        "name": av.name,
        "family": av.family,
        "settings": av.settings_dict,
        "upload_id": av.upload_id,
        "job": _job(job),
        "results": _results(job),
        "url": url_for("api_v1.get_avatar", avatar_id=av.id),
    }


def _create(make, describe):
    """Run an action that queues a job: 201 with the new thing, 400 if refused, 429 if the queue is full."""
    try:
        obj = make()
    except (UploadError, actions.ActionError) as e:
        return _error(400, str(e))
    except QueueFullError as e:
        return _error(429, str(e))
    return jsonify(describe(obj)), 201


def _delete(fn, obj):
    try:
        fn(obj)
    except BusyError as e:
        return _error(409, str(e))
    except ValueError as e:
        return _error(400, str(e))
    return "", 204


@v1.get("/jobs")
@token_required
def list_jobs():
    rows = db.session.scalars(
        select(Job).where(Job.user_id == g.api_user.id).order_by(Job.created_at.desc()).limit(200)
    ).all()
    return jsonify({"jobs": [_job(j) for j in rows]})


@v1.get("/jobs/<job_id>")
@token_required
def get_job(job_id: str):
    return jsonify(_job(_mine(Job, job_id)))


@v1.delete("/jobs/<job_id>")
@token_required
def delete_job(job_id: str):
    return _delete(deletion.delete_job, _mine(Job, job_id))


@v1.get("/jobs/<job_id>/files/<path:relpath>")
@token_required
def job_file(job_id: str, relpath: str):
    job = _mine(Job, job_id)
    path = owned_file(job_dir(job.user_id, job.id), relpath)
    return send_file(path, as_attachment=True, download_name=path.name)


@v1.post("/uploads")
@token_required
def create_upload():
    file = request.files.get("video")
    if file is None or not file.filename:
        return _error(400, "send the video as the multipart field 'video'")
    try:
        resolution = int(request.form.get("resolution", 256))
    except ValueError:
        return _error(400, f"resolution is one of {', '.join(map(str, RESOLUTIONS))}")
    return _create(lambda: actions.upload_subject(g.api_user.id, file, resolution), _upload)


@v1.get("/uploads/<upload_id>")
@token_required
def get_upload(upload_id: str):
    return jsonify(_upload(_mine(Upload, upload_id)))


@v1.delete("/uploads/<upload_id>")
@token_required
def delete_upload(upload_id: str):
    return _delete(deletion.delete_upload, _mine(Upload, upload_id))


@v1.post("/uploads/<upload_id>/avatars")
@token_required
def create_avatar(upload_id: str):
    up = _mine(Upload, upload_id)
    body = request.get_json(silent=True) or {}
    try:
        n_identity, texture_size = int(body.get("n_identity", 100)), int(body.get("texture_size", 1024))
    except (TypeError, ValueError):
        return _error(400, "n_identity and texture_size are numbers")
    name, family = str(body.get("name", "avatar"))[:120], str(body.get("family", "mesh"))
    quality = str(body.get("quality", "standard"))
    return _create(lambda: actions.build_avatar(up, name, family, quality, n_identity, texture_size), _avatar)


@v1.get("/avatars/<avatar_id>")
@token_required
def get_avatar(avatar_id: str):
    return jsonify(_avatar(_mine(Avatar, avatar_id)))


@v1.delete("/avatars/<avatar_id>")
@token_required
def delete_avatar(avatar_id: str):
    return _delete(deletion.delete_avatar, _mine(Avatar, avatar_id))
