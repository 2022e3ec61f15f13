"""Avatar studio, trust: login throttling and lockout, session revocation and expiry, user names,
deleting data (files and rows), file permissions, the no-worker banner."""

from __future__ import annotations

import os
import re
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from src.app import accounts
from src.app.extensions import db
from src.app.models import Avatar, Job, LoginThrottle, Upload, User
from tests.app_fixtures import PASSWORD, VIDEOS, csrf, login, make_app, upload


def _try_login(client, name: str, password: str):
    token = csrf(client, "/login")
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token})


def test_lockout_after_a_few_wrong_passwords(tmp_path):
    app = make_app(tmp_path, users=("alice",))
    client = app.test_client()
    codes = [_try_login(client, "alice", f"guess {i}").status_code for i in range(100)]
    answered = codes.count(200)  # the password was checked and found wrong
    assert answered == app.config["LOGIN_FREE_FAILURES"] <= 10 and set(codes) == {200, 429}
    r = _try_login(client, "alice", PASSWORD)  # locked: even the right password waits
    wait = re.search(r"too many failed logins; try again in (\d+) s", r.get_data(as_text=True))
    assert r.status_code == 429 and wait and 0 < int(wait.group(1)) <= 30
    with app.app_context():
        row = db.session.get(LoginThrottle, "alice")
        assert row.failures == answered  # the refused attempts did not lengthen the lockout
        row.locked_until = row.locked_until - timedelta(seconds=31)  # the lockout has passed
        db.session.commit()
    r = _try_login(client, "alice", "guess again")  # one more check, then a doubled lockout
    assert r.status_code == 200 and _try_login(client, "alice", PASSWORD).status_code == 429
    wait = re.search(r"try again in (\d+) s", _try_login(client, "alice", PASSWORD).get_data(as_text=True))
    assert wait and 30 < int(wait.group(1)) <= 60  # the second lockout is twice as long
    with app.app_context():
        row = db.session.get(LoginThrottle, "alice")
        row.locked_until = row.locked_until - timedelta(seconds=61)
        db.session.commit()
    assert _try_login(client, "alice", PASSWORD).status_code == 302  # after the lockout it works
    with app.app_context():
        assert db.session.get(LoginThrottle, "alice") is None  # and the counter is cleared


def test_unknown_names_cost_the_same_hash_check(tmp_path, monkeypatch):
    app = make_app(tmp_path, users=("alice",))
    seen: list[str] = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: seen.append(h) or real(h, p))
    with app.app_context():
        assert accounts.authenticate("alice", "wrong password") is None
        assert accounts.authenticate("nobody", "wrong password") is None
        known = db.session.scalar(select(User.password_hash).where(User.username == "alice"))
    assert len(seen) == 2 and seen[0] == known
    method = known.split("$", 1)[0]  # e.g. scrypt:32768:8:1: the same cost for the dummy hash
    assert seen[1].split("$", 1)[0] == method and seen[1] != known


def test_cookie_from_before_logout_is_refused(tmp_path):
    app = make_app(tmp_path, users=("alice",))
    client = login(app, "alice")
    cookie = client.get_cookie("session").value
    token = csrf(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    r = thief.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_password_change_ends_other_sessions(tmp_path):
    app = make_app(tmp_path, users=("alice",))
    me, other = login(app, "alice"), login(app, "alice")
    token = csrf(me, "/account")
    new = "a new password 2"
    r = me.post(
        "/account/password", data={"current": PASSWORD, "new": new, "confirm": new, "csrf_token": token}
    )
    assert r.status_code == 302
    assert me.get("/").status_code == 200  # this browser stays in
    assert other.get("/").status_code == 302  # the other one is out
    assert _try_login(app.test_client(), "alice", new).status_code == 302
    assert _try_login(app.test_client(), "alice", PASSWORD).status_code == 200  # the old one fails


def test_session_expires(tmp_path):
    app = make_app(tmp_path, users=("alice",), PERMANENT_SESSION_LIFETIME=1)
    client = login(app, "alice")
    assert client.get("/").status_code == 200
    time.sleep(2.1)
    assert client.get("/").status_code == 302


def test_user_names_are_normalised(tmp_path):
    app = make_app(tmp_path, users=("alice",))
    with app.app_context():
        for bad in ("", "   ", "Alice", "alice ", "a/b", "x" * 81):
            with pytest.raises(ValueError):
                accounts.create_user(bad, PASSWORD)
    assert _try_login(app.test_client(), " ALICE", PASSWORD).status_code == 302


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _data_of(app, tmp_path: Path):
    """Alice's real upload, an avatar on it with training, render and cross jobs holding files."""
    from src.app import jobs

    client = login(app, "alice")
    upload_id = upload(client, VIDEOS / "single_face.mp4").headers["Location"].rsplit("/", 1)[-1]
    assert upload(client, VIDEOS / "single_face.mp4").status_code == 302  # a second video, kept
    with app.app_context():
        up = db.session.get(Upload, upload_id)
        uid = up.user_id
        pre = db.session.get(Job, up.job_id)
        pre.status = "done"
        av = Avatar(user_id=uid, upload_id=up.id, name="a", family="mesh")
        db.session.add(av)
        db.session.flush()
        train = jobs.enqueue(uid, "train", {}, upload_id=up.id, avatar_id=av.id)
        train.status = "done"
        av.job_id = train.id
        render = jobs.enqueue(uid, "reenact", {}, avatar_id=av.id)
        render.status = "done"
        drive = Upload(user_id=uid, purpose="driving", filename="d.mp4", stored_name="video.mp4")
        db.session.add(drive)
        db.session.flush()
        cross = jobs.enqueue(uid, "cross", {}, upload_id=drive.id, avatar_id=av.id)
        cross.status = "done"
        drive.job_id = cross.id
        db.session.commit()
        users = tmp_path / "users" / uid
        for j in (pre, train, render, cross):
            (users / "jobs" / j.id / "run").mkdir(parents=True, exist_ok=True)
            (users / "jobs" / j.id / "run" / "out.bin").write_bytes(b"x")
        (users / "uploads" / drive.id).mkdir(parents=True)
        (users / "uploads" / drive.id / "video.mp4").write_bytes(b"x")
        ids = {"upload": up.id, "avatar": av.id, "render": render.id, "train": train.id, "uid": uid}
        ids["jobs"] = [pre.id, train.id, render.id, cross.id]
        ids["drive"] = drive.id
    return client, ids


def test_delete_avatar_then_video_removes_files_and_rows(tmp_path):
    app = make_app(tmp_path, users=("alice", "bob"))
    client, ids = _data_of(app, tmp_path)
    users = tmp_path / "users" / ids["uid"]
    # someone else cannot delete it, and the answer does not say it exists
    bob = login(app, "bob")
    assert (
        bob.post(f"/avatars/{ids['avatar']}/delete", data={"csrf_token": csrf(bob, "/")}).status_code == 404
    )
    token = csrf(client, "/")
    r = client.post(f"/jobs/{ids['train']}/delete", data={"csrf_token": token})
    assert r.status_code == 302 and (users / "jobs" / ids["train"]).exists()  # belongs to the avatar
    assert client.post(f"/jobs/{ids['render']}/delete", data={"csrf_token": token}).status_code == 302
    assert not (users / "jobs" / ids["render"]).exists()
    assert client.post(f"/avatars/{ids['avatar']}/delete", data={"csrf_token": token}).status_code == 302
    with app.app_context():
        assert db.session.get(Avatar, ids["avatar"]) is None
        assert db.session.get(Upload, ids["drive"]) is None  # the cross-reenactment's driving video
        left = set(db.session.scalars(select(Job.id)))
    assert not left & set(ids["jobs"][1:]) and ids["jobs"][0] in left
    for name in ids["jobs"][1:]:
        assert not (users / "jobs" / name).exists()
    assert not (users / "uploads" / ids["drive"]).exists()
    assert client.post(f"/uploads/{ids['upload']}/delete", data={"csrf_token": token}).status_code == 302
    assert not (users / "uploads" / ids["upload"]).exists() and not (users / "jobs" / ids["jobs"][0]).exists()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Upload)) == 1  # the second video stays
    assert client.get(f"/uploads/{ids['upload']}").status_code == 404


def test_delete_account_removes_everything_and_refuses_while_running(tmp_path):
    app = make_app(tmp_path, users=("alice", "bob"))
    client, ids = _data_of(app, tmp_path)
    with app.app_context():
        db.session.get(Job, ids["render"]).status = "running"
        db.session.commit()
    token = csrf(client, "/account")
    r = client.post(
        "/account/delete", data={"password": PASSWORD, "csrf_token": token}, follow_redirects=True
    )
    assert "still running" in r.get_data(as_text=True)
    with app.app_context():
        job = db.session.get(Job, ids["render"])
        assert job.cancel_requested and db.session.get(User, ids["uid"]) is not None
        job.status = "cancelled"
        db.session.commit()
    r = client.post("/account/delete", data={"password": "wrong", "csrf_token": token}, follow_redirects=True)
    assert "type your password" in r.get_data(as_text=True)
    r = client.post("/account/delete", data={"password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert not (tmp_path / "users" / ids["uid"]).exists()
    with app.app_context():
        for model in (Upload, Avatar, Job):
            assert not db.session.scalars(select(model).where(model.user_id == ids["uid"])).all()
        assert db.session.scalar(select(User).where(User.username == "alice")) is None
        assert db.session.scalar(select(User).where(User.username == "bob")) is not None
    assert _try_login(app.test_client(), "alice", PASSWORD).status_code == 200


def test_files_and_database_private_to_the_app_user(tmp_path):
    loose = tmp_path / "users" / "old"
    loose.mkdir(parents=True)
    (loose / "v.mp4").write_bytes(b"x")
    os.chmod(loose / "v.mp4", 0o644)
    app = make_app(tmp_path, users=("alice",))
    client = login(app, "alice")
    upload(client, VIDEOS / "single_face.mp4")
    paths = [tmp_path, tmp_path / "avatar.db", loose / "v.mp4", *_files(tmp_path / "users")]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_banner_when_no_worker_is_online(tmp_path):
    from src.app.worker import Worker

    app = make_app(tmp_path, users=("alice",))
    client = login(app, "alice")
    assert 'id="no-worker"' in client.get("/").get_data(as_text=True)
    with app.app_context():
        Worker(app, "w-test").beat()
    assert 'id="no-worker"' not in client.get("/").get_data(as_text=True)


def test_api_token_create_poll_download_delete(tmp_path):
    """The JSON API with a token: 401 JSON without one, upload, poll, build refused before step 1, a
    file download, delete; the session cookie alone does not open it."""
    from tests.app_fixtures import run_queue

    app = make_app(tmp_path, users=("alice", "bob"))
    anon = app.test_client()
    r = anon.get("/api/v1/jobs")
    assert r.status_code == 401 and r.is_json and "token" in r.get_json()["error"]
    assert anon.get("/api/v1/jobs", headers={"Authorization": "Bearer av_wrong"}).status_code == 401
    client = login(app, "alice")
    assert client.get("/api/v1/jobs").status_code == 401  # a cookie is not a token (no CSRF on the API)
    page = client.post("/account/token", data={"csrf_token": csrf(client, "/account")}).get_data(as_text=True)
    token = re.search(r'id="api-token">([^<]+)<', page).group(1)
    auth = {"Authorization": f"Bearer {token}"}
    api = app.test_client()
    with open(VIDEOS / "single_face.mp4", "rb") as f:
        r = api.post(
            "/api/v1/uploads",
            headers=auth,
            data={"video": (f, "me.mp4"), "resolution": "64"},
            content_type="multipart/form-data",
        )
    assert r.status_code == 201, r.get_json()
    up = r.get_json()
    assert up["job"]["status"] == "queued" and up["filename"] == "me.mp4"
    r = api.post(f"/api/v1/uploads/{up['id']}/avatars", headers=auth, json={"quality": "tiny"})
    assert r.status_code == 400 and "not preprocessed yet" in r.get_json()["error"]
    run_queue(app, max_jobs=1)
    job = api.get(up["job"]["url"], headers=auth).get_json()
    assert job["status"] == "done", job["error"]
    listed = api.get("/api/v1/jobs", headers=auth).get_json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    r = api.get(f"/api/v1/jobs/{job['id']}/files/subject/meta.json", headers=auth)
    assert r.status_code == 200 and "n_frames" in r.get_data(as_text=True)
    bob = login(app, "bob")
    bob_page = bob.post("/account/token", data={"csrf_token": csrf(bob, "/account")}).get_data(as_text=True)
    bob_auth = {"Authorization": "Bearer " + re.search(r'id="api-token">([^<]+)<', bob_page).group(1)}
    r = api.get(up["url"], headers=bob_auth)
    assert r.status_code == 404 and r.is_json  # another user's upload does not exist for bob
    assert api.delete(up["url"], headers=bob_auth).status_code == 404
    assert api.delete(up["url"], headers=auth).status_code == 204
    assert api.get(up["url"], headers=auth).status_code == 404
    assert not (tmp_path / "users" / job["id"]).exists()
    with app.app_context():
        assert db.session.get(Job, job["id"]) is None


def test_fair_queue_round_robin_and_cap(tmp_path):
    """One user queues ten jobs (the cap takes five); the other user's job starts next after the first."""
    from src.app import jobs

    app = make_app(tmp_path, users=("alice", "bob"), QUEUE_PER_USER=5)
    with app.app_context():
        alice, bob = (db.session.scalar(select(User).where(User.username == n)) for n in ("alice", "bob"))
        accepted = 0
        for _ in range(10):
            try:
                jobs.enqueue(alice.id, "reenact", {})
                accepted += 1
            except jobs.QueueFullError as e:
                assert "5 jobs waiting" in str(e)
        assert accepted == 5
        first = jobs.claim_next("w")
        assert first.user_id == alice.id
        theirs = jobs.enqueue(bob.id, "reenact", {})
        assert jobs.claim_next("w").id == theirs.id  # bob's job next, before alice's other four
        assert jobs.claim_next("w").user_id == alice.id


def test_redact_paths_tracebacks_class_names():
    from src.app.redact import redact, user_error

    log = (
        "\x1b[32mEpoch 1\x1b[0m loss=0.3\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/avatar/src/cli/train.py", line 12, in <module>\n'
        "    main()\n"
        "    ^^^^^^\n"
        "src.preprocess.errors.NoFaceError: no face in /srv/avatar/users/ab/uploads/cd/video.mp4\n"
        "see https://example.org/a/b"
    )
    assert redact(log) == "Epoch 1 loss=0.3\nerror: no face in video.mp4\nsee https://example.org/a/b"
    msg = "/data/u/x/video.mp4: only 4 of 95 frames usable; or lower preprocess.min_frames (NoFaceError)"
    assert user_error(msg) == "video.mp4: only 4 of 95 frames usable"
    assert user_error(None) is None


def test_training_progress_stage_labels_and_eta(tmp_path, monkeypatch):
    """Stage labels follow the named stages step by step; the ETA is the measured step rate times the
    steps left; once the budget is done the run is labelled as fitting and scoring held-out frames."""
    from src.app import worker

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "trainer: {max_steps: 30}\n"
        "model: {stages: {shape: {steps: 5}, texture: {steps: 10}, joint: {steps: 15}}}\n"
    )
    csv_dir = run / "csv" / "version_0"
    csv_dir.mkdir(parents=True)

    def at(step: int, now: float, clock: dict, running: bool = True) -> dict:
        rows = "".join(f"{s},0,0.5\n" for s in range(step + 1))
        (csv_dir / "metrics.csv").write_text("step,epoch,train/loss\n" + rows)
        monkeypatch.setattr(worker.time, "time", lambda: now)
        return worker.training_progress(tmp_path, clock, running)

    clock: dict = {}
    first = at(0, 100.0, clock)
    assert (first["done"], first["stage"], "eta_s" in first) == (1, "shape", False)  # no rate measured yet
    expect = {1: "shape", 5: "shape", 6: "texture", 15: "texture", 16: "joint", 29: "joint"}
    for done, stage in expect.items():
        p = at(done - 1, 100.0 + 2.0 * (done - 1), clock)  # 2 s per step after the first
        assert p["stage"] == stage, (done, p)
        if done > 1:
            assert p["eta_s"] == round(2.0 * (30 - done))
    end = at(29, 160.0, clock)
    assert end["stage"] == "held-out fit and scoring" and "eta_s" not in end
    assert at(29, 170.0, clock, running=False)["stage"] == "joint"


def test_recovery_never_takes_the_callers_own_jobs(tmp_path):
    """A worker whose heartbeat is late (a busy machine) keeps its job; another worker's stale job is taken,
    and a job of a dead worker on this host is taken at once, heartbeat or not."""
    import socket

    from src.app import jobs
    from src.app.models import utcnow

    app = make_app(tmp_path, users=("alice",))
    with app.app_context():
        uid = db.session.scalar(select(User.id))
        host = socket.gethostname()
        mine, theirs, dead = (jobs.enqueue(uid, "reenact", {}) for _ in range(3))
        for job, worker_id in ((mine, "me"), (theirs, "other"), (dead, f"{host}:999999999:abc")):
            job.status, job.worker_id = "running", worker_id
            job.heartbeat_at = utcnow() - timedelta(seconds=3600 if job is not dead else 0)
        db.session.commit()
        changed = {j.id for j in jobs.recover_stale(own="me")}
        assert changed == {theirs.id, dead.id}
        assert db.session.get(Job, mine.id).status == "running"


def test_half_written_run_files_never_fail_the_job(tmp_path):
    from src.app import worker

    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text(
        "trainer: {max_steps: 30}\nmodel:\n  stages: {a: [1,\n"
    )
    with pytest.raises(Exception):  # noqa: B017  (what a train.py rewriting its config leaves for a moment)
        worker.training_progress(tmp_path, {})
    assert worker.safe_progress(tmp_path, {}) == {}
