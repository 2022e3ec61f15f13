"""The three steps: record and upload, build the avatar, reenact; plus the dashboard and job pages."""

from __future__ import annotations

import json
import shutil

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from src.app import jobs
from src.app.extensions import db
from src.app.forms import ActionForm, AvatarForm, CrossForm, UploadForm
from src.app.media import UploadError, check_video
from src.app.models import Avatar, Job, JSONText, Upload
from src.app.pipeline import QUALITY, presets
from src.app.storage import job_dir, sanitize_filename, upload_dir
from src.app.views import owned
from src.app.views.files import results

bp = Blueprint("studio", __name__)
ANGLES = {"pose": ("yaw", "pitch", "roll"), "neck": ("yaw", "pitch", "roll")}


def _mine(model):
    return db.session.scalars(
        select(model).where(model.user_id == current_user.id).order_by(model.created_at.desc())
    ).all()


def _save_upload(file, purpose: str, resolution: int) -> Upload:
    """Save an uploaded video under a random name, decode-check it, record it; UploadError if refused."""
    up = Upload(
        user_id=current_user.id,
        purpose=purpose,
        filename=sanitize_filename(file.filename, "video"),
        stored_name="upload.bin",
        resolution=resolution,
    )
    db.session.add(up)
    db.session.flush()
    folder = upload_dir(current_user.id, up.id)
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "upload.bin"
    try:
        file.save(raw)
        info = check_video(raw, current_app.config["MAX_VIDEO_SECONDS"])
    except UploadError:
        db.session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    up.stored_name = f"video.{info['ext']}"
    raw.rename(folder / up.stored_name)
    up.size_bytes = (folder / up.stored_name).stat().st_size
    up.video_info = JSONText.dump(info)
    return up


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
            up = _save_upload(form.video.data, "subject", form.resolution.data)
        except UploadError as e:
            flash(str(e), "error")
            return render_template("upload.html", form=form), 400
        video = str(upload_dir(current_user.id, up.id) / up.stored_name)
        job = jobs.enqueue(
            current_user.id, "preprocess", {"video": video, "resolution": up.resolution}, upload_id=up.id
        )
        up.job_id = job.id
        db.session.commit()
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
    )


@bp.route("/uploads/<upload_id>/avatar", methods=["POST"])
@login_required
def new_avatar(upload_id: str):
    """Step 2: queue the training of an avatar on a preprocessed upload."""
    up = owned(Upload, upload_id)
    pre = db.session.get(Job, up.job_id)
    form = AvatarForm()
    if pre is None or pre.status != "done":
        flash("the video is not preprocessed yet; wait for step 1 to finish", "error")
        return redirect(url_for("studio.upload_detail", upload_id=up.id))
    if not form.validate_on_submit() or form.quality.data not in QUALITY[form.family.data]:
        flash(
            "check the avatar settings: " + "; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()), "error"
        )
        return redirect(url_for("studio.upload_detail", upload_id=up.id))
    settings = {
        "family": form.family.data,
        "quality": form.quality.data,
        "resolution": up.resolution,
        "n_identity": form.n_identity.data,
        "texture_size": form.texture_size.data,
    }
    av = Avatar(
        user_id=current_user.id,
        upload_id=up.id,
        name=form.name.data or "avatar",
        family=form.family.data,
        settings=JSONText.dump(settings),
    )
    db.session.add(av)
    db.session.flush()
    params = {
        **settings,
        "video": str(upload_dir(current_user.id, up.id) / up.stored_name),
        "subject_src": str(job_dir(current_user.id, pre.id) / "subject"),
    }
    job = jobs.enqueue(current_user.id, "train", params, upload_id=up.id, avatar_id=av.id)
    av.job_id = job.id
    db.session.commit()
    return redirect(url_for("studio.avatar_detail", avatar_id=av.id))


@bp.route("/avatars/<avatar_id>")
@login_required
def avatar_detail(avatar_id: str):
    """Step 2 progress and results: metrics, orbit video, downloads."""
    av = owned(Avatar, avatar_id)
    job = db.session.get(Job, av.job_id)
    return render_template("avatar_detail.html", av=av, job=job, res=results(job), cancel=ActionForm())


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
        jobs.enqueue(current_user.id, "reenact", params, priority=10 if preview else 0, avatar_id=av.id)
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
        up = _save_upload(form.video.data, "driving", av.settings_dict.get("resolution", 256))
    except UploadError as e:
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
