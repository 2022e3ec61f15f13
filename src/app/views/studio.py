"""The three steps: record and upload, build the avatar, reenact; plus the dashboard and job pages."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from src.app import actions, deletion, jobs
from src.app.deletion import BusyError
from src.app.extensions import db
from src.app.forms import ActionForm, AvatarForm, CrossForm, UploadForm
from src.app.jobs import QueueFullError
from src.app.media import UploadError
from src.app.models import Avatar, Job, Upload
from src.app.pipeline import presets
from src.app.storage import job_dir, upload_dir
from src.app.views import owned
from src.app.views.files import results

bp = Blueprint("studio", __name__)
ANGLES = {"pose": ("yaw", "pitch", "roll"), "neck": ("yaw", "pitch", "roll")}
VIEWER_JS = "vendor/model-viewer/model-viewer.min.js"  # scripts/vendor_viewer.py puts it there
METRIC_LABELS = {
    "psnr": "PSNR, dB (higher is closer)",
    "ssim": "SSIM, 0-1 (higher is closer)",
    "lpips": "LPIPS perceptual distance (lower is closer)",
    "psnr_masked": "PSNR on the person only, dB",
    "ssim_masked": "SSIM on the person only",
    "lpips_masked": "LPIPS on the person only",
    "fid": "FID (lower is closer)",
    "csim": "identity similarity, 0-1 (higher is the same person)",
}
SETTING_LABELS = {
    "family": "family",
    "quality": "training length",
    "resolution": "crop (px)",
    "n_identity": "identity shapes",
    "texture_size": "texture (px)",
}


def _mine(model):
    return db.session.scalars(
        select(model).where(model.user_id == current_user.id).order_by(model.created_at.desc())
    ).all()


@bp.route("/")
@login_required
def index():
    return render_template(
        "index.html",
        uploads=[u for u in _mine(Upload) if u.purpose == "subject"],
        avatars=_mine(Avatar),
        jobs=_mine(Job)[:30],
        jobmap=_jobmap(),
    )


def _jobmap() -> dict[str, Job]:
    return {j.id: j for j in _mine(Job)}


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    """Step 1: instructions and the upload form; a valid video queues its preprocessing."""
    form = UploadForm()
    if form.validate_on_submit():
        try:
            up = actions.upload_subject(current_user.id, form.video.data, form.resolution.data)
        except (UploadError, QueueFullError) as e:
            flash(str(e), "error")
            return render_template("upload.html", form=form), 400
        return redirect(url_for("studio.upload_detail", upload_id=up.id))
    if request.method == "POST":
        return render_template("upload.html", form=form), 400
    return render_template("upload.html", form=form)


@bp.route("/uploads/<upload_id>")
@login_required
def upload_detail(upload_id: str):
    """Step 1 result: usable/excluded frames, contact sheet, tracking overlay, subject download."""
    up = owned(Upload, upload_id)
    job = db.session.get(Job, up.job_id)
    form = AvatarForm()
    form.n_identity.data = form.n_identity.data or 100
    return render_template(
        "upload_detail.html",
        up=up,
        job=job,
        summary=results(job),
        form=form,
        avatars=[a for a in _mine(Avatar) if a.upload_id == up.id],
        typical=jobs.typical_minutes(),
    )


@bp.route("/uploads/<upload_id>/avatar", methods=["POST"])
@login_required
def new_avatar(upload_id: str):
    """Step 2: queue the training of an avatar on a preprocessed upload."""
    up = owned(Upload, upload_id)
    form = AvatarForm()
    if not form.validate_on_submit():
        flash(
            "check the avatar settings: " + "; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()), "error"
        )
        return redirect(url_for("studio.upload_detail", upload_id=up.id))
    try:
        av = actions.build_avatar(
            up,
            form.name.data,
            form.family.data,
            form.quality.data,
            form.n_identity.data,
            form.texture_size.data,
        )
    except (actions.ActionError, QueueFullError) as e:
        flash(str(e), "error")
        return redirect(url_for("studio.upload_detail", upload_id=up.id))
    return redirect(url_for("studio.avatar_detail", avatar_id=av.id))


@bp.route("/avatars/<avatar_id>")
@login_required
def avatar_detail(avatar_id: str):
    """Step 2 progress and results: metrics, orbit video, downloads."""
    av = owned(Avatar, avatar_id)
    job = db.session.get(Job, av.job_id)
    viewer = Path(current_app.static_folder) / VIEWER_JS
    return render_template(
        "avatar_detail.html",
        av=av,
        job=job,
        res=results(job),
        cancel=ActionForm(),
        viewer_js=url_for("static", filename=VIEWER_JS) if viewer.is_file() else None,
        metric_labels=METRIC_LABELS,
        setting_labels=SETTING_LABELS,
    )


@bp.route("/jobs/<job_id>/cancel", methods=["POST"])
@login_required
def cancel(job_id: str):
    job = owned(Job, job_id)
    if ActionForm().validate_on_submit():
        jobs.request_cancel(job)
    return redirect(url_for("studio.job_detail", job_id=job.id))


@bp.route("/jobs/<job_id>")
@login_required
def job_detail(job_id: str):
    job = owned(Job, job_id)
    return render_template("job_detail.html", job=job, cancel=ActionForm())


def _reenact_params(av: Avatar, names: list[str]) -> dict:
    """Mix weights, pose and neck angles and length from the reenact form, clamped to valid ranges."""

    def num(key: str, lo: float, hi: float, default: float = 0.0) -> float:
        try:
            value = float(request.form.get(key, default))
        except ValueError:
            value = default
        return min(hi, max(lo, value)) if value == value else default

    mix = {n: num(f"mix_{n}", 0.0, 1.0) for n in names}
    angles = {g: {a: num(f"{g}_{a}", -60.0, 60.0) for a in axes} for g, axes in ANGLES.items()}
    return {
        "mode": "preset",
        "mix": mix,
        **angles,
        "n_frames": int(num("n_frames", 2, 300, 30)),
        "ckpt": str(job_dir(av.user_id, av.job_id) / "run" / "checkpoints" / "last.ckpt"),
    }


@bp.route("/avatars/<avatar_id>/reenact", methods=["GET", "POST"])
@login_required
def reenact(avatar_id: str):
    """Step 3: presets, mixing sliders, view pose and neck pose; quick preview or a rendered MP4."""
    av = owned(Avatar, avatar_id)
    train = db.session.get(Job, av.job_id)
    names = list(presets(current_app.config["PROJECT_ROOT"]))
    if request.method == "POST":
        if train is None or train.status != "done":
            flash("the avatar is not trained yet; wait for step 2 to finish", "error")
            return redirect(url_for("studio.reenact", avatar_id=av.id))
        params = _reenact_params(av, names)
        preview = request.form.get("action") == "preview"
        params["preview"] = preview
        try:
            jobs.enqueue(current_user.id, "reenact", params, priority=10 if preview else 0, avatar_id=av.id)
        except QueueFullError as e:
            flash(str(e), "error")
        return redirect(url_for("studio.reenact", avatar_id=av.id))
    renders = [j for j in _mine(Job) if j.avatar_id == av.id and j.kind in ("reenact", "cross")]
    last = next(
        (j.params_dict for j in renders if j.kind == "reenact"), {}
    )  # the form starts from the last one
    return render_template(
        "reenact.html",
        av=av,
        train=train,
        presets=names,
        renders=renders,
        last=last,
        angles=ANGLES,
        cross=CrossForm(),
        cancel=ActionForm(),
        preset_json=json.dumps(list(names)),
    )


@bp.route("/avatars/<avatar_id>/cross", methods=["POST"])
@login_required
def cross(avatar_id: str):
    """Step 3, cross-reenactment: a driving video is preprocessed and tracked, then drives the avatar."""
    av = owned(Avatar, avatar_id)
    train = db.session.get(Job, av.job_id)
    form = CrossForm()
    if train is None or train.status != "done" or not form.validate_on_submit():
        flash("choose a driving video (and wait for the avatar to finish training)", "error")
        return redirect(url_for("studio.reenact", avatar_id=av.id))
    try:
        jobs.ensure_room(current_user.id)
        up = actions.save_upload(
            current_user.id, form.video.data, "driving", av.settings_dict.get("resolution", 256)
        )
    except (UploadError, QueueFullError) as e:
        flash(str(e), "error")
        return redirect(url_for("studio.reenact", avatar_id=av.id))
    params = {
        "mode": "cross",
        "video": str(upload_dir(current_user.id, up.id) / up.stored_name),
        "resolution": up.resolution,
        "ckpt": str(job_dir(av.user_id, av.job_id) / "run" / "checkpoints" / "last.ckpt"),
    }
    job = jobs.enqueue(current_user.id, "cross", params, upload_id=up.id, avatar_id=av.id)
    up.job_id = job.id
    db.session.commit()
    return redirect(url_for("studio.reenact", avatar_id=av.id))


def _delete(fn, obj, what: str, back: str):
    """Run a deletion from a page's button; flash the result."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        fn(obj)
    except (BusyError, ValueError) as e:
        flash(str(e), "error")
        return redirect(back)
    flash(f"the {what} and its files were deleted", "info")
    return redirect(url_for("studio.index"))


@bp.route("/uploads/<upload_id>/delete", methods=["POST"])
@login_required
def delete_upload(upload_id: str):
    up = owned(Upload, upload_id)
    back = url_for("studio.upload_detail", upload_id=up.id)
    return _delete(deletion.delete_upload, up, "video, its avatars", back)


@bp.route("/avatars/<avatar_id>/delete", methods=["POST"])
@login_required
def delete_avatar(avatar_id: str):
    av = owned(Avatar, avatar_id)
    return _delete(deletion.delete_avatar, av, "avatar", url_for("studio.avatar_detail", avatar_id=av.id))


@bp.route("/jobs/<job_id>/delete", methods=["POST"])
@login_required
def delete_job(job_id: str):
    job = owned(Job, job_id)
    return _delete(deletion.delete_job, job, "job", url_for("studio.job_detail", job_id=job.id))
