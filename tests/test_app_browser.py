"""A real browser through the avatar studio's three steps (Playwright + Debian's headless Chromium).

Log in, upload the selfie clip over a throttled uplink (the progress bar moves), wait for preprocessing,
start a tiny training, see the avatar in the 3D viewer (its canvas is not just the backdrop), download the
GLB (it must load in trimesh), pick a preset, move a mixing slider with the keyboard, preview, render,
download the MP4; every page fits a 390 px phone without horizontal scrolling; delete the avatar (its
files leave the disk). Screenshots of every page go to ``tests/artifacts/browser/`` (git-ignored). Run with
``make test-browser`` (needs ``apt-get install chromium``; Playwright's own browser download is not used).
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh
from waitress import create_server

from tests.app_fixtures import PASSWORD, VIDEOS, make_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "browser"
WAIT_MS = 20 * 60 * 1000  # preprocessing and the tiny training on a busy 2-core CPU


@pytest.fixture()
def live(tmp_path):
    from src.app.worker import Worker

    app = make_app(tmp_path, users=("alice",))
    srv = create_server(app, host="127.0.0.1", port=0, threads=8)
    web = threading.Thread(target=srv.run, daemon=True)
    web.start()
    worker = Worker(app, "browser-test-worker")
    runner = threading.Thread(target=worker.run_forever, daemon=True)
    runner.start()
    yield f"http://127.0.0.1:{srv.effective_port}", tmp_path
    worker.stop.set()
    srv.close()
    runner.join(120)


@pytest.mark.slow
@pytest.mark.browser
def test_three_steps_in_a_browser(live):
    live, data_dir = live
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*"):
        old.unlink()
    t0 = time.perf_counter()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],  # software WebGL
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        shot = lambda name: page.screenshot(path=str(ARTIFACTS / name), full_page=True)  # noqa: E731

        page.goto(f"{live}/login")
        page.fill("#username", "alice")
        page.fill("#password", PASSWORD)
        shot("01_login.png")
        page.click("#submit")
        page.wait_for_url(f"{live}/")

        page.click("text=1. Record and upload")
        page.set_input_files("#video", str(VIDEOS / "single_face.mp4"))
        page.select_option("#resolution", "64")
        shot("02_upload.png")
        cdp = page.context.new_cdp_session(page)  # a slow uplink (150 KB/s), so the upload takes seconds
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 150 * 1024},
        )
        page.click("#submit")
        page.wait_for_selector("#upload-progress:not([hidden])", timeout=10_000)
        page.wait_for_function(
            "document.querySelector('#upload-progress progress').value > 0", timeout=30_000
        )
        shot("02b_upload_progress.png")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        page.wait_for_selector(".job-status", timeout=60_000)
        shot("03_preprocessing.png")
        page.wait_for_selector("#subject-summary", timeout=WAIT_MS)  # the page reloads when the job is done
        assert "30</strong> of 30 frames usable" in page.content()
        page.wait_for_function("document.querySelector('img.sheet').naturalWidth > 0")
        shot("04_preprocessed.png")

        page.select_option("#family", "mesh")
        page.select_option("#quality", "tiny")
        page.fill("#n_identity", "30")
        page.select_option("#texture_size", "256")
        page.click("#avatar-form #submit")
        page.wait_for_selector(".job-status", timeout=30_000)
        page.wait_for_function(  # live progress: an epoch shown (or already finished)
            "document.querySelector('#avatar-results') || document.querySelector('.job-epoch').textContent",
            timeout=WAIT_MS,
        )
        shot("05_training.png")
        page.wait_for_selector("#avatar-results", timeout=WAIT_MS)
        page.wait_for_function(
            "document.querySelector('#viewer') && document.querySelector('#viewer').loaded", timeout=120_000
        )
        page.wait_for_timeout(1500)  # a few frames of the turntable
        shot("06_trained.png")
        png = page.evaluate("document.querySelector('#viewer').toDataURL('image/png')")
        img = iio.imread(base64.b64decode(png.split(",", 1)[1]), extension=".png")[..., :3].astype(float)
        background = np.median(img.reshape(-1, 3), axis=0)  # the viewer's plain backdrop
        drawn = (np.abs(img - background).sum(-1) > 30).mean()
        assert drawn > 0.02, (
            f"the 3D viewer shows no avatar ({drawn:.1%} of the canvas differs from the backdrop)"
        )
        with page.expect_download() as dl:
            page.click("#dl-glb")
        glb = ARTIFACTS / "avatar.glb"
        dl.value.save_as(glb)
        mesh = trimesh.load(glb, force="mesh")
        assert len(mesh.vertices) > 1000 and len(mesh.faces) > 1000

        page.click("#to-reenact")
        page.select_option("#preset", "smile")
        page.focus("#mix_clueless")
        for _ in range(8):  # a person dragging the slider: 8 steps of 0.05
            page.keyboard.press("ArrowRight")
        assert page.input_value("#mix_clueless") == "0.4" and page.input_value("#mix_smile") == "1"
        page.focus("#pose_yaw")
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        page.fill("input[name=n_frames]", "4")
        shot("07_reenact_form.png")
        page.click("#preview-btn")
        page.wait_for_selector("img.preview", timeout=WAIT_MS)
        page.wait_for_function("document.querySelector('img.preview').naturalWidth > 0")
        shot("08_preview.png")
        page.click("#render-btn")
        page.wait_for_selector("a.dl-video", timeout=WAIT_MS)
        shot("09_rendered.png")
        with page.expect_download() as dl:
            page.click("a.dl-video")
        video = ARTIFACTS / "preset.mp4"
        dl.value.save_as(video)
        assert len(iio.imread(video, extension=".mp4")) == 4
        avatar_url = page.url.replace("/reenact", "")
        pages = [page.url, avatar_url, f"{live}/", f"{live}/upload", f"{live}/account"]
        page.goto(f"{live}/")
        job_link = 'document.querySelector(\'a[href^="/jobs/"]:not([href*="/files/"])\').href'
        pages.append(page.evaluate(job_link))
        pages.append(page.evaluate("document.querySelector('a[href^=\"/uploads/\"]').href"))

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.context.add_cookies(page.context.cookies())
        for i, url in enumerate([*pages, f"{live}/login"]):
            phone.goto(url)
            width = phone.evaluate("document.documentElement.scrollWidth")
            phone.screenshot(path=str(ARTIFACTS / f"10_phone_{i}.png"), full_page=True)
            assert width <= 390, f"{url} is {width} px wide on a 390 px phone"

        page.goto(avatar_url)
        job_dirs = sorted((data_dir / "users").glob("*/jobs/*"))
        assert job_dirs
        page.on("dialog", lambda d: d.accept())  # the "delete?" confirmation
        page.click("#delete-avatar")
        page.wait_for_url(f"{live}/")
        assert "deleted" in page.content()
        left = sorted((data_dir / "users").glob("*/jobs/*"))
        assert len(left) == 1  # only the video's preprocessing is left; the avatar's runs are gone from disk
        assert page.goto(avatar_url).status == 404
        browser.close()
    (ARTIFACTS / "wall_time.txt").write_text(f"{time.perf_counter() - t0:.1f} s\n")
