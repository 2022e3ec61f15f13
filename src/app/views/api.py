"""JSON status of a job for the progress polling in static/app.js."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import login_required

from src.app.models import Job
from src.app.views import owned

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.route("/jobs/<job_id>")
@login_required
def job_status(job_id: str):
    return jsonify(owned(Job, job_id).to_public())
