"""The avatar studio end to end with Flask's test client on the real selfie clip (tiny fast config).

upload -> preprocess + tracking -> train (mesh avatar, tiny) -> export + orbit -> reenact (mix, pose, neck)
and a one-frame preview -> downloads; another user's URLs; path traversal on every download route.
"""

from __future__ import annotations

import io
import json
import zipfile

import imageio.v3 as iio
import pytest
import trimesh

from src.app.pipeline import QUALITY
from tests.app_fixtures import VIDEOS, csrf, flow, job_of, login, run_queue  # noqa: F401

pytestmark = pytest.mark.integration  # the studio end to end: upload, preprocess, train, reenact


def test_preprocess_result_page_and_subject_zip(flow):  # noqa: F811
    app, client = flow["app"], flow["client"]
    job = job_of(app, flow["pre_job"])
    assert job.status == "done", (job.error, job.log_tail[-2000:])
    page = client.get(f"/uploads/{flow['upload_id']}").get_data(as_text=True)
    assert "my_selfie_1_.mp4" in page  # the sanitised name, no path parts
    assert "30</strong> of 30 frames usable" in page
    sheet = client.get(f"/jobs/{job.id}/files/contact_sheet.png")
    assert sheet.status_code == 200 and iio.imread(io.BytesIO(sheet.data)).shape[2] == 3
    overlay = client.get(f"/jobs/{job.id}/files/subject/overlays/tracking.mp4")
    assert overlay.status_code == 200 and len(iio.imread(io.BytesIO(overlay.data), extension=".mp4")) > 0
    z = client.get(f"/jobs/{job.id}/zip/subject.zip")
    assert z.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(z.data)).namelist()
    assert "subject/tracking.npz" in names and "subject/landmarks68.npy" in names
    assert len([n for n in names if n.startswith("subject/frames/")]) == 30
    assert any(n.startswith("subject/masks/") for n in names)


def test_training_results_and_downloads(flow):  # noqa: F811
    app, client = flow["app"], flow["client"]
    job = job_of(app, flow["train_job"])
    assert job.status == "done", (job.error, job.log_tail[-3000:])
    tiny = sum(QUALITY["mesh"]["tiny"])  # shape + texture + joint steps
    prog = job.progress_dict
    assert (prog["unit"], prog["done"], prog["total"], prog["stage"]) == ("step", tiny, tiny, "joint")
    res = json.loads(client.get(f"/jobs/{job.id}/files/results.json").data)
    assert res["test_metrics"]["psnr"] > 5
    page = client.get(f"/avatars/{flow['avatar_id']}").get_data(as_text=True)
    assert "psnr" in page and "orbit.mp4" in page
    glb = client.get(f"/jobs/{job.id}/files/{res['files']['glb']}?dl=1")
    assert glb.status_code == 200 and "attachment" in glb.headers["Content-Disposition"]
    mesh = trimesh.load(io.BytesIO(glb.data), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 1000 and len(mesh.faces) > 1000
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job.id}/zip/mesh.zip").data))
    exts = {n.rsplit(".", 1)[-1] for n in z.namelist()}
    assert {"obj", "mtl", "png", "glb"} <= exts
    assert not [n for n in z.namelist() if ".hydra" in n or n.endswith(".log")]  # no run configs, no logs
    data_dir = app.config["DATA_DIR"].encode()
    assert not [n for n in z.namelist() if data_dir in z.read(n)]  # no server path in any file
    assert data_dir.decode() not in page and data_dir.decode() not in job.to_public()["log_tail"]
    estimate = " ".join(client.get(f"/uploads/{flow['upload_id']}").get_data(as_text=True).split())
    assert "Typical training times on this server: mesh tiny about" in estimate  # measured here, not guessed
    orbit = client.get(f"/jobs/{job.id}/files/orbit/orbit.mp4")
    assert len(iio.imread(io.BytesIO(orbit.data), extension=".mp4")) == 4
    ckpt = client.get(f"/jobs/{job.id}/files/run/checkpoints/last.ckpt")
    assert ckpt.status_code == 200 and len(ckpt.data) > 10_000


def test_reenact_render_and_preview(flow):  # noqa: F811
    app, client = flow["app"], flow["client"]
    preview_id, render_id = flow["reenact_order"]  # the preview has priority over the earlier render
    preview, render = job_of(app, preview_id), job_of(app, render_id)
    assert preview.params_dict["preview"] and render.status == preview.status == "done", render.error
    log = render.log_tail
    assert "mix={clueless:0.300,smile:0.600}" in log and "pose.yaw=15.00" in log and "neck.pitch=-5.00" in log
    frame = client.get(f"/jobs/{preview.id}/files/out/frames/000000.png")
    assert iio.imread(io.BytesIO(frame.data)).shape[:2] == (64, 64)
    video = client.get(f"/jobs/{render.id}/files/out/preset.mp4?dl=1")
    assert len(iio.imread(io.BytesIO(video.data), extension=".mp4")) == 4
    page = client.get(f"/avatars/{flow['avatar_id']}/reenact").get_data(as_text=True)
    assert "provocative" in page and "indifferent" in page and "preview" in page


@pytest.mark.slow
def test_cross_reenactment(flow):  # noqa: F811
    """A driving video is uploaded, preprocessed and tracked, then drives the avatar (3 min on a busy CPU)."""
    app, client = flow["app"], flow["client"]
    avatar_id = flow["avatar_id"]
    token = csrf(client, f"/avatars/{avatar_id}/reenact")
    with open(VIDEOS / "single_face.mp4", "rb") as f:  # the same clip as the driving video
        r = client.post(
            f"/avatars/{avatar_id}/cross",
            data={"video": (f, "driver.mp4"), "csrf_token": token},
            content_type="multipart/form-data",
        )
    assert r.status_code == 302, r.get_data(as_text=True)
    (job_id,) = run_queue(app)
    job = job_of(app, job_id)
    assert job.kind == "cross" and job.status == "done", (job.error, job.log_tail[-2000:])
    assert "mode=cross" in client.get(f"/jobs/{job.id}/files/job.log").text
    video = client.get(f"/jobs/{job.id}/files/out/cross.mp4")
    assert video.status_code == 200 and len(iio.imread(io.BytesIO(video.data), extension=".mp4")) == 30
    page = client.get(f"/avatars/{flow['avatar_id']}/reenact").get_data(as_text=True)
    assert "out/cross.mp4" in page


def _urls(f) -> list[str]:
    j = f["train_job"]
    return [
        f"/uploads/{f['upload_id']}",
        f"/avatars/{f['avatar_id']}",
        f"/avatars/{f['avatar_id']}/reenact",
        f"/jobs/{j}",
        f"/api/jobs/{j}",
        f"/jobs/{j}/files/job.log",
        f"/jobs/{j}/zip/mesh.zip",
        f"/jobs/{f['pre_job']}/zip/subject.zip",
    ]


def test_other_user_gets_404(flow):  # noqa: F811
    bob = login(flow["app"], "bob")
    for url in _urls(flow):
        assert flow["client"].get(url).status_code == 200, url
        assert bob.get(url).status_code == 404, url
    anonymous = flow["app"].test_client()
    for url in _urls(flow):
        assert anonymous.get(url).status_code == 302, url  # to the login page


TRAVERSALS = [
    "../job.log",
    "..%2f..%2fapp.db",
    "%2e%2e/%2e%2e/secret_key",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "run/../../../secret_key",
    "..\\..\\secret_key",
    "subject/%00meta.json",
    "....//....//secret_key",
]


def test_path_traversal_refused_on_every_download_route(flow, tmp_path):  # noqa: F811
    app, client = flow["app"], flow["client"]
    job = job_of(app, flow["train_job"])
    jdir = f"{app.config['DATA_DIR']}/users/{job.user_id}/jobs/{job.id}"
    import os

    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, f"{jdir}/escape.txt")  # a symlink inside the job folder pointing out of it
    os.symlink(app.config["DATA_DIR"], f"{jdir}/escape_dir")
    for bad in [*TRAVERSALS, "escape.txt", "escape_dir/secret_key"]:
        for url in (
            f"/jobs/{job.id}/files/{bad}",
            f"/jobs/{job.id}/zip/{bad}",
            f"/jobs/{flow['pre_job']}/files/{bad}",
        ):
            r = client.get(url)
            assert r.status_code in (404, 308), (url, r.status_code)
            assert b"secret" not in r.data and b"root:" not in r.data
    assert client.get(f"/jobs/{job.id}/files/results.json").status_code == 200  # a legitimate file
