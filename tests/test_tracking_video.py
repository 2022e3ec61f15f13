"""A real face end to end (the astronaut photo as a clip) and `train.py experiment=baseline_video`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.preprocess import preprocess_video
from src.preprocess.clips import write_astronaut_clip, write_subject_video
from src.preprocess.video import probe_video
from src.tracking import attach_ground_truth, score_tracking, track_subject
from tests.helpers import CONF_DIR, compose_train

pytestmark = pytest.mark.integration  # preprocesses, tracks and trains on video clips

FAST = {"steps_rigid": 100, "steps": 500, "focal": {"search_steps": [30, 120], "search_frames": 8}}


@pytest.fixture(scope="module")
def astro_clip(tmp_path_factory):
    return write_astronaut_clip(tmp_path_factory.mktemp("astro") / "astronaut.mp4", n=8, size=256)


def test_astronaut_clip_detection_landmarks_tracking(astro_clip, ict_model, tmp_path):
    root = tmp_path / "astronaut"
    meta = preprocess_video(astro_clip, root, {"resolution": 256, "min_frames": 4})
    assert meta["n_frames"] == 8 and not any(meta["excluded"].values())
    info = track_subject(root, ict_model, {**FAST, "overlay": {"enabled": True, "max_frames": 4}})
    # reprojection error of the fitted model against the detected landmarks, pixels at 256 px
    assert info["landmark_px_nonjaw"] < 3.0, info
    assert info["landmark_px"] < 4.5, info
    p = SubjectLayout(root).read_params("tracking")
    assert np.degrees(np.linalg.norm(p["rotation"], axis=1)).max() < 25  # a frontal photo
    overlay = probe_video(root / "overlays" / "tracking.mp4")
    assert (overlay.n_frames, overlay.width, overlay.height) == (4, 512, 256)
    assert SubjectLayout(root).read_meta()["tracking"]["config"]["jaw_weight"] == 0.2


@pytest.mark.parametrize("experiment", ["baseline_video", "nha_video", "selfie_video"])
def test_train_on_a_video(experiment, astro_clip, tmp_path):
    """`python train.py experiment=<...>_video data.path=clip.mp4` prepares the data once, then trains."""
    from src.cli.train import train

    overrides = [
        f"experiment={experiment}", f"data.path={astro_clip}", f"paths.data_dir={tmp_path / 'data'}",
        "data.preprocess.resolution=64", "data.preprocess.min_frames=4", "data.val_frames=1",
        "data.test_frames=1", "data.batch_size=2", "data.tracking.steps=200", "data.tracking.steps_rigid=50",
        "data.tracking.focal.search_steps=[20,60]", "data.tracking.overlay.mesh=false", "metrics.fid=false",
        "debug=fdr", "logger=csv",
    ]  # fmt: skip
    cfg = compose_train(overrides, output_dir=tmp_path)
    metrics = train(cfg)
    # a few steps only: the image avatar's averaged generator is still near its initialisation (~4-8 dB)
    assert "test/psnr" in metrics and metrics["test/psnr"] > 3
    root = tmp_path / "data" / "videos" / "astronaut_64px"  # one cache folder per crop resolution
    meta = SubjectLayout(root).validate()
    assert meta["available"]["tracking"] and meta["source"] == "video"
    assert (root / "overlays" / "tracking.mp4").exists()


@pytest.mark.slow
def test_synthetic_subject_as_video_is_scored_against_ground_truth(ict_model, tmp_path):
    """Synthetic frames -> MP4 -> detection, landmarks, tracking -> errors against the true parameters."""
    from src.datamodules.synthetic.generate import generate_subject

    syn = tmp_path / "syn"
    generate_subject(syn, ict_model, resolution=192, n_frames=16, texture_size=256, batch_size=8)
    video = write_subject_video(syn, tmp_path / "syn.mp4")
    root = tmp_path / "video"
    preprocess_video(video, root, {"resolution": 192, "min_frames": 8, "min_face_size": 40})
    attach_ground_truth(root, syn)
    track_subject(root, ict_model, {**FAST, "overlay": {"enabled": False}})
    s = score_tracking(root, ict_model)
    assert s["detected_px_nonjaw"] < 6 and s["rotation_deg"] < 8 and s["vertex_face_aligned_mm"] < 6, s


@pytest.mark.slow
def test_tracking_cli(astro_clip, tmp_path):
    cmd = [sys.executable, "-m", "src.tracking", f"video={astro_clip}", f"root={tmp_path / 'cli'}",
           "preprocess.min_frames=4", "tracking.overlay.enabled=false",
           f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=str(CONF_DIR)[: -len("/conf")]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "cli" / "tracking.npz").exists()


def test_overlay_goes_to_the_wandb_logger(tmp_path):
    """prepare_data hands overlays/tracking.mp4 to the trainer's WandbLogger (a stand-in here)."""
    from src.tracking.video_datamodule import VideoDataModule
    from src.utils.video import write_video

    logged = {}

    class Run:
        def log(self, d):
            logged.update(d)

    class WandbLogger:  # the class name is what the data module looks for
        experiment = Run()

    class Trainer:
        loggers = [WandbLogger()]

    dm = VideoDataModule(path=str(tmp_path / "me.mp4"), root=str(tmp_path / "me"))
    write_video(tmp_path / "me" / "overlays" / "tracking.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    dm.trainer = Trainer()
    dm._log_overlay()
    assert type(logged["tracking/overlay"]).__name__ == "Video"
    assert dm.config()["path"] == str(tmp_path / "me.mp4") and "generator" not in dm.config()


def test_checkpoint_data_is_never_rebuilt_differently(astro_clip, tmp_path):
    """A data module rebuilt from a checkpoint's config refuses other preprocessing or tracking settings
    (they would give other frames or parameters) before touching the cache, and reuses the same ones."""
    import hydra

    from src.core.layout import DataMismatchError
    from src.tracking.video_datamodule import VideoDataModule

    tracking = {**FAST, "steps": 100, "steps_rigid": 30, "overlay": {"enabled": False}}
    ict = {"_target_": "src.headmodel.ict.ICTHeadModel"}
    dm = VideoDataModule(
        path=str(astro_clip), cache_dir=str(tmp_path), headmodel=ict,
        preprocess={"resolution": 64, "min_frames": 4}, tracking=tracking, val_frames=1, test_frames=1,
    )  # fmt: skip
    dm.prepare_data()
    saved = dm.config()
    assert saved["data_hashes"] == dm.current_hashes() and all(saved["data_hashes"].values())
    before = dm.layout.meta_path.read_bytes()
    other_crop = {**saved, "preprocess": {**saved["preprocess"], "crop": {"scale": 2.5}}}
    with pytest.raises(DataMismatchError, match="astronaut.mp4: .*preprocessing settings"):
        hydra.utils.instantiate(other_crop).prepare_data()
    other_fit = {**saved, "tracking": {**tracking, "steps": 120}}
    with pytest.raises(DataMismatchError, match="tracking settings"):
        hydra.utils.instantiate(other_fit).prepare_data()
    assert dm.layout.meta_path.read_bytes() == before  # nothing rebuilt
    hydra.utils.instantiate(saved).prepare_data()  # the same settings: the cache as it is
    assert dm.layout.meta_path.read_bytes() == before
