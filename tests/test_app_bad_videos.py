"""Avatar studio: videos that decode but cannot become a subject fail with the pipeline's one-line message.

A truncated clip, a clip without a face and a clip of several people are uploaded, preprocessed by the
worker's code and shown to their owner as failed, with the message and the kept log.
"""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from tests.app_fixtures import VIDEOS, job_of, login, make_app, run_queue, upload

pytestmark = pytest.mark.integration  # the studio's worker runs preprocessing on each clip


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    app = make_app(tmp / "app")
    client = login(app, "alice")
    data = (VIDEOS / "single_face.mp4").read_bytes()
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    people = iio.imread(VIDEOS / "multi_face.jpg")[:664, :1000]  # even sides for H.264
    multi = tmp / "multi_face.mp4"
    iio.imwrite(multi, np.stack([people] * 12), fps=12, codec="libx264")
    results = {}
    for name, path in (("truncated", truncated), ("no_face", VIDEOS / "no_face.mp4"), ("multi", multi)):
        r = upload(client, path)
        results[name] = r
    run_queue(app)
    return app, client, results


def _job_page(app, client, response):
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    job_id = page.split('data-job="', 1)[1].split('"', 1)[0]
    return job_of(app, job_id), page


def test_truncated_video(failed):
    app, client, results = failed
    r = results["truncated"]  # the MP4's index (moov, at the end) is cut off: refused by the decode check
    assert r.status_code == 400 and "is not a readable video" in r.get_data(as_text=True)


def test_no_face(failed):
    app, client, results = failed
    job, page = _job_page(app, client, results["no_face"])
    assert job.status == "failed" and "no face" in job.error and "\n" not in job.error, job.error
    assert job.error in page  # the one-line message shown to the user
    log = client.get(f"/jobs/{job.id}/files/job.log")
    assert log.status_code == 200 and b"no face" in log.data  # the failed job keeps its log, shown inline
    assert log.headers["Content-Disposition"] == "inline"
    on_disk = (app.config["DATA_DIR"] + f"/users/{job.user_id}/jobs/{job.id}/job.log").encode()
    assert b"NoFaceError" in Path(on_disk.decode()).read_bytes()  # the operator's copy keeps every detail


def test_multiple_faces(failed):
    app, client, results = failed
    job, page = _job_page(app, client, results["multi"])
    assert job.status == "failed" and "more than one" in job.error.lower(), job.error
    assert job.error in page


def test_failed_pages_and_downloads_show_no_internals(failed):
    """No server path and no exception class name on a failed job's page, API answer or log download."""
    app, client, results = failed
    internals = re.compile(r"(?:/[\w.-]+){2,}|\b[A-Z]\w*(?:Error|Exception)\b")
    for name in ("no_face", "multi"):
        job, page = _job_page(app, client, results[name])
        texts = {
            "page": page,
            "job page": client.get(f"/jobs/{job.id}").get_data(as_text=True),
            "api": client.get(f"/api/jobs/{job.id}").get_data(as_text=True),
            "log": client.get(f"/jobs/{job.id}/files/job.log").get_data(as_text=True),
        }
        for where, text in texts.items():
            text = re.sub(r'(?:href|src|action)="[^"]*"', "", text)  # the app's own URLs
            found = internals.findall(text)
            assert not found, (name, where, found[:5])
