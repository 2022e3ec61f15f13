"""What a user can start, shared by the pages and the JSON API: upload a video, build an avatar.

Each action checks its input, records the rows and queues the job; errors are :class:`ActionError`
(or its subclasses) with one sentence for the user.
"""

from __future__ import annotations

import shutil
from typing import Any

from flask import current_app
from werkzeug.datastructures import FileStorage

from src.app import jobs
from src.app.extensions import db
from src.app.media import UploadError, check_video
from src.app.models import Avatar, Job, JSONText, Upload
from src.app.pipeline import QUALITY, RESOLUTIONS
from src.app.storage import job_dir, sanitize_filename, upload_dir

TEXTURE_SIZES = (256, 512, 1024, 2048)


class ActionError(ValueError):
    """An action was refused; the message says why and what to do."""


def save_upload(user_id: str, file: FileStorage, purpose: str, resolution: int) -> Upload:
    """Save an uploaded video under a random name, decode-check it, record it; UploadError if refused."""
    if resolution not in RESOLUTIONS:
        raise UploadError(f"the crop resolution must be one of {', '.join(map(str, RESOLUTIONS))} px")
    up = Upload(
        user_id=user_id,
        purpose=purpose,
        filename=sanitize_filename(file.filename, "video"),
        stored_name="upload.bin",
        resolution=resolution,
    )
    db.session.add(up)
    db.session.flush()
    folder = upload_dir(user_id, up.id)
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


def upload_subject(user_id: str, file: FileStorage, resolution: int) -> Upload:
    """Step 1: save a subject video and queue its preprocessing (QueueFullError, UploadError)."""
    jobs.ensure_room(user_id)
    up = save_upload(user_id, file, "subject", resolution)
    video = str(upload_dir(user_id, up.id) / up.stored_name)
    job = jobs.enqueue(user_id, "preprocess", {"video": video, "resolution": up.resolution}, upload_id=up.id)
    up.job_id = job.id
    db.session.commit()
    return up


def build_avatar(
    up: Upload, name: str, family: str, quality: str, n_identity: int, texture_size: int
) -> Avatar:
    """Step 2: queue the training of an avatar on a preprocessed upload (ActionError, QueueFullError)."""
    pre = db.session.get(Job, up.job_id) if up.job_id else None
    if pre is None or pre.status != "done":
        raise ActionError("the video is not preprocessed yet; wait for step 1 to finish")
    if family not in QUALITY:
        raise ActionError(f"the family is one of {', '.join(QUALITY)}")
    if quality not in QUALITY[family]:
        raise ActionError(f"the training length is one of {', '.join(QUALITY[family])}")
    if not 1 <= int(n_identity) <= 100:
        raise ActionError("the number of identity shapes is between 1 and 100")
    if int(texture_size) not in TEXTURE_SIZES:
        raise ActionError(f"the texture size is one of {', '.join(map(str, TEXTURE_SIZES))}")
    jobs.ensure_room(up.user_id)
    settings: dict[str, Any] = {
        "family": family,
        "quality": quality,
        "resolution": up.resolution,
        "n_identity": int(n_identity),
        "texture_size": int(texture_size),
    }
    av = Avatar(
        user_id=up.user_id,
        upload_id=up.id,
        name=name or "avatar",
        family=family,
        settings=JSONText.dump(settings),
    )
    db.session.add(av)
    db.session.flush()
    params = {
        **settings,
        "video": str(upload_dir(up.user_id, up.id) / up.stored_name),
        "subject_src": str(job_dir(up.user_id, pre.id) / "subject"),
    }
    job = jobs.enqueue(up.user_id, "train", params, upload_id=up.id, avatar_id=av.id)
    av.job_id = job.id
    db.session.commit()
    return av
