"""Fixtures of the avatar studio tests: an app in a temporary folder, logged-in clients, the tiny flow."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "videos"
# a tiny, fast pipeline: few frames, short tracking, two training batches per epoch, two held-out frames
TINY = {
    "preprocess": ["max_frames=30"],
    "tracking": ["steps=80", "steps_rigid=40", "focal.mode=fixed", "overlay.max_frames=6"],
    "train": [
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "data.val_frames=2",
        "data.test_frames=2",
        "data.batch_size=2",
        "model.heldout_fit.steps=2",
        "metrics.fid=false",
        "callbacks.heldout_video.max_frames=2",
        "trainer.log_every_n_steps=1",
    ],
    "reenact": [],
    "export": [],
}
PASSWORD = "correct horse 1"


def app_settings(tmp: Path, **extra: Any) -> dict[str, Any]:
    """Settings of a test app whose data and SQLite database live in ``tmp``."""
    return {
        "DATA_DIR": str(tmp),
        "EXTRA_OVERRIDES": TINY,
        "ORBIT_FRAMES": 4,
        "STALE_S": 2.0,
        "HEARTBEAT_S": 0.5,
        "WORKER_POLL_S": 0.2,
        **extra,
    }


def make_app(tmp: Path, users: tuple[str, ...] = ("alice", "bob"), **extra: Any):
    """A fresh app (migrated database) with ``users`` created through the CLI command's function."""
    from src.app import create_app
    from src.app.accounts import create_user

    app = create_app(app_settings(tmp, **extra))
    with app.app_context():
        for name in users:
            create_user(name, PASSWORD)
    return app


def csrf(client, url: str) -> str:
    """The CSRF token of the form on ``url``."""
    html = client.get(url).get_data(as_text=True)
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert m, f"no CSRF token on {url}"
    return m.group(1)


def login(app, username: str):
    """A test client logged in as ``username``."""
    client = app.test_client()
    token = csrf(client, "/login")
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


def upload(client, path: Path, name: str | None = None, resolution: int = 64):
    """POST a video file to step 1 (with the form's CSRF token); the response."""
    token = csrf(client, "/upload")
    with open(path, "rb") as f:
        data = {"video": (f, name or path.name), "resolution": str(resolution), "csrf_token": token}
        return client.post("/upload", data=data, content_type="multipart/form-data")


def run_queue(app, max_jobs: int = 20) -> list[str]:
    """Run queued jobs in this process (the worker's code, no polling loop) until none is left."""
    from src.app.worker import Worker

    worker, done = Worker(app, "test-worker"), []
    while len(done) < max_jobs:
        job_id = worker.run_once()
        if job_id is None:
            break
        done.append(job_id)
    return done


def job_of(app, job_id: str):
    from src.app.extensions import db
    from src.app.models import Job

    with app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def last_job(app, kind: str):
    from sqlalchemy import select

    from src.app.extensions import db
    from src.app.models import Job

    with app.app_context():
        job = db.session.scalars(select(Job).where(Job.kind == kind).order_by(Job.seq.desc())).first()
        db.session.expunge(job)
        return job


@pytest.fixture(scope="session")
def flow(tmp_path_factory) -> dict[str, Any]:
    """The whole tiny flow once per session: upload -> preprocess -> train -> reenact (+ preview), timed."""
    from src.app.extensions import db
    from src.app.models import Avatar, Upload

    app = make_app(tmp_path_factory.mktemp("studio"))
    client = login(app, "alice")
    timings: dict[str, float] = {}
    r = upload(client, VIDEOS / "single_face.mp4", name="../../my selfie (1).mp4")
    assert r.status_code == 302, r.get_data(as_text=True)
    upload_id = r.headers["Location"].rsplit("/", 1)[-1]
    t = time.perf_counter()
    run_queue(app)
    timings["preprocess_and_tracking_s"] = time.perf_counter() - t
    with app.app_context():
        up = db.session.get(Upload, upload_id)
        pre_job = up.job_id
    token = csrf(client, f"/uploads/{upload_id}")
    r = client.post(
        f"/uploads/{upload_id}/avatar",
        data={
            "name": "tiny",
            "family": "mesh",
            "quality": "tiny",
            "n_identity": "50",
            "texture_size": "256",
            "csrf_token": token,
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)
    avatar_id = r.headers["Location"].rsplit("/", 1)[-1]
    t = time.perf_counter()
    run_queue(app)
    timings["train_export_orbit_s"] = time.perf_counter() - t
    with app.app_context():
        train_job = db.session.get(Avatar, avatar_id).job_id
    token = csrf(client, f"/avatars/{avatar_id}/reenact")
    form = {
        "csrf_token": token,
        "mix_smile": "0.6",
        "mix_clueless": "0.3",
        "pose_yaw": "15",
        "neck_pitch": "-5",
        "n_frames": "4",
    }
    client.post(f"/avatars/{avatar_id}/reenact", data={**form, "action": "render"})
    client.post(f"/avatars/{avatar_id}/reenact", data={**form, "action": "preview"})
    t = time.perf_counter()
    order = run_queue(app)
    timings["reenact_render_and_preview_s"] = time.perf_counter() - t
    out = Path(__file__).resolve().parent / "artifacts" / "app_flow_timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))
    return {
        "app": app,
        "client": client,
        "upload_id": upload_id,
        "avatar_id": avatar_id,
        "pre_job": pre_job,
        "train_job": train_job,
        "reenact_order": order,
        "timings": timings,
    }
