"""Avatar studio: login, CSRF, upload checks (decode, size, names), ownership, safe paths, the CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from src.app.storage import safe_path, sanitize_filename
from tests.app_fixtures import PASSWORD, VIDEOS, csrf, login, make_app, upload


@pytest.fixture()
def app(tmp_path):
    return make_app(tmp_path)


def test_login_required_and_wrong_password(app):
    client = app.test_client()
    r = client.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    token = csrf(client, "/login")
    r = client.post("/login", data={"username": "alice", "password": "wrong", "csrf_token": token})
    assert r.status_code == 200 and "wrong user name or password" in r.get_data(as_text=True)
    r = client.post(
        "/login?next=//evil.example/x", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"  # no open redirect


def test_passwords_hashed_and_ids_random(app):
    from sqlalchemy import select

    from src.app.extensions import db
    from src.app.models import User

    with app.app_context():
        users = db.session.scalars(select(User)).all()
        assert all(
            u.password_hash != PASSWORD and u.password_hash.startswith(("scrypt:", "pbkdf2:")) for u in users
        )
        assert all(re.fullmatch(r"[0-9a-f-]{36}", u.id) for u in users)


def test_csrf_missing_is_refused(app):
    client = login(app, "alice")
    with open(VIDEOS / "single_face.mp4", "rb") as f:
        r = client.post(
            "/upload", data={"video": (f, "a.mp4"), "resolution": "64"}, content_type="multipart/form-data"
        )
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 400  # CSRFProtect guards every POST, the login form too
    for url in ("/logout", "/jobs/x/cancel", "/uploads/x/avatar", "/avatars/x/reenact", "/avatars/x/cross"):
        assert client.post(url, data={}).status_code == 400, url
    assert client.get("/").status_code == 200  # the failed logout left the session alone


def test_garbage_bytes_named_mp4_refused(app, tmp_path):
    client = login(app, "alice")
    bad = tmp_path / "video.mp4"
    bad.write_bytes(os.urandom(50_000))
    r = upload(client, bad)
    assert r.status_code == 400
    assert "is not a readable video" in r.get_data(as_text=True)
    assert not list(Path(app.config["DATA_DIR"]).glob("users/*/uploads/*/*"))  # nothing kept


def test_image_disguised_as_video_refused(app, tmp_path):
    client = login(app, "alice")
    r = upload(client, VIDEOS / "single_face.jpg", name="clip.mov")
    assert r.status_code == 400 and "not accepted" in r.get_data(as_text=True)


def test_oversize_upload_refused(tmp_path):
    app = make_app(tmp_path, MAX_CONTENT_LENGTH=100_000)
    client = login(app, "alice")
    r = upload(client, VIDEOS / "no_face.mp4")  # well over 100 kB
    assert r.status_code == 413 and "limit" in r.get_data(as_text=True)


def test_too_long_video_refused(tmp_path):
    app = make_app(tmp_path, MAX_VIDEO_SECONDS=1.0)
    r = upload(login(app, "alice"), VIDEOS / "single_face.mp4")
    assert r.status_code == 400 and "the limit is 1 s" in r.get_data(as_text=True)


def test_sanitize_filename():
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("..\\..\\win.ini") == "win.ini"
    assert sanitize_filename("m\u00e9 \u00fc.mp4") == "me_u.mp4"
    assert sanitize_filename("...") == "file" and sanitize_filename("a\x00b<script>.mp4") == "a_b_script_.mp4"


def test_safe_path(tmp_path):
    base = tmp_path / "job"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "ok.txt").write_text("ok")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", base / "link.txt")
    os.symlink(base / "sub" / "ok.txt", base / "inner_link.txt")
    assert safe_path(base, "sub/ok.txt") == (base / "sub" / "ok.txt").resolve()
    assert safe_path(base, "inner_link.txt") is not None  # a link that stays inside is fine
    for bad in (
        "../secret.txt",
        "sub/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "link.txt",
        "sub",
        "",
        "sub/ok.txt\x00",
        "C:/x",
        "\\secret.txt",
    ):
        assert safe_path(base, bad) is None, bad


def test_unknown_ids_and_other_users_404(app):
    client = login(app, "alice")
    for url in (
        "/uploads/nope",
        "/avatars/" + "a" * 36,
        "/jobs/../../x",
        "/api/jobs/" + "0" * 36,
        "/jobs/" + "1" * 36 + "/files/job.log",
        "/jobs/x" * 10 + "/zip/mesh.zip",
    ):
        assert client.get(url).status_code == 404, url


def test_create_user_cli(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-user", "carol"], input="longpassword\nlongpassword\n")
    assert r.exit_code == 0 and "user carol created" in r.output
    r = runner.invoke(args=["create-user", "carol"], input="longpassword\nlongpassword\n")
    assert r.exit_code != 0 and "exists already" in r.output
    r = runner.invoke(args=["create-user", "dave"], input="short\nshort\n")
    assert r.exit_code != 0 and "at least 8 characters" in r.output
    login(app, "alice")


def test_migrations_match_models(app):
    """The Alembic migrations build exactly the tables the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from src.app.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_localhost_by_default():
    from src.app.config import DEFAULTS

    assert DEFAULTS["HOST"] == "127.0.0.1"
