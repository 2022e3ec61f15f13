"""Downloads, served only from the owner's job folder (no traversal, no symlink escape)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, request, send_file
from flask_login import login_required

from src.app.media import zip_tree
from src.app.models import Job
from src.app.redact import redact
from src.app.storage import job_dir, owned_file
from src.app.views import owned

bp = Blueprint("files", __name__)

# zip bundles a finished job offers: name -> (job kind, members relative to the job folder)
BUNDLES = {
    "subject.zip": (
        "preprocess",
        [
            "subject/frames",
            "subject/masks",
            "subject/segmentation",
            "subject/landmarks68.npy",
            "subject/landmarks478.npy",
            "subject/tracking.npz",
            "subject/meta.json",
            "subject/overlays",
        ],
    ),
    "mesh.zip": ("train", ["export"]),
}


@bp.route("/jobs/<job_id>/files/<path:relpath>")
@login_required
def download(job_id: str, relpath: str):
    """One file of a job folder; ``?dl=1`` as an attachment."""
    job = owned(Job, job_id)
    path = owned_file(job_dir(job.user_id, job.id), relpath)
    if path.suffix == ".log":  # shown in the browser, without server paths (the file keeps them)
        text = redact(path.read_text(errors="replace"))
        return Response(text, mimetype="text/plain", headers={"Content-Disposition": "inline"})
    return send_file(path, as_attachment=request.args.get("dl") == "1", download_name=path.name)


@bp.route("/jobs/<job_id>/zip/<name>")
@login_required
def bundle(job_id: str, name: str):
    """A zip of a finished job's results (built once, then cached in the job folder)."""
    job = owned(Job, job_id)
    if name not in BUNDLES or BUNDLES[name][0] != job.kind or job.status != "done":
        abort(404)
    jdir = job_dir(job.user_id, job.id)
    members = BUNDLES[name][1]
    if name == "mesh.zip":
        members = [m for m in members if (jdir / m).exists()]
        if not members:
            abort(404)
    out = jdir / "bundles" / name
    if not out.exists():
        zip_tree(out, jdir, members, skip=lambda rel: ".hydra" in rel.parts or rel.suffix == ".log")
    path = owned_file(jdir, f"bundles/{name}")
    return send_file(path, as_attachment=True, download_name=name)


def results(job: Job) -> dict:
    """A finished job's ``results.json`` / ``summary.json`` (empty if absent)."""
    jdir = job_dir(job.user_id, job.id)
    for name in ("results.json", "summary.json"):
        if (jdir / name).is_file():
            return json.loads((jdir / name).read_text())
    return {}
