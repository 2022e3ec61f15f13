"""Reenactment: sequence builders against hand computations, presets, orbit cameras, video, reenact.py."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import math

import numpy as np
import pytest
import torch

from src.headmodel.rotation import axis_angle_to_matrix, euler_to_axis_angle
from src.reenact import (
    ParamSequence,
    ReenactError,
    apply_head_pose,
    apply_neck_pose,
    cross_sequence,
    facing_rotation,
    keyframe_curve,
    load_presets,
    mix_presets,
    orbit_cameras,
    preset_sequence,
    preset_vectors,
    ramp_weights,
    reference_frame,
    reference_pose,
    scale_intrinsics,
    select_frames,
    self_sequence,
)
from src.render import Cameras, intrinsics_from_fov, look_at
from src.utils.video import write_video
from tests.avatar_ckpt import tiny_avatar_checkpoint
from tests.helpers import compose_train

pytestmark = pytest.mark.integration  # reenacts a trained checkpoint

CAM_R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
PRESET_NAMES = ("smile", "provocative", "clueless", "indifferent", "neutral", "surprise")


def _rot(yaw=0.0, pitch=0.0, roll=0.0) -> torch.Tensor:
    """(3,) axis-angle from degrees."""
    return euler_to_axis_angle(*(torch.tensor(math.radians(a)) for a in (yaw, pitch, roll)))


def _params(expression, rotation, translation, R=None, joint_pose=None) -> dict[str, torch.Tensor]:
    e = torch.tensor(expression, dtype=torch.float32)
    n = e.shape[0]
    return {
        "expression": e,
        "rotation": torch.stack(rotation) if isinstance(rotation, list) else rotation,
        "translation": torch.tensor(translation, dtype=torch.float32),
        "joint_pose": torch.zeros(n, 0) if joint_pose is None else joint_pose,
        "R": CAM_R if R is None else R,  # a camera at (0,0,0.7) looking at the face (along -z)
        "t": torch.tensor([0.0, 0.0, 0.7]),
    }


def test_self_sequence_and_frame_selection():
    p = _params([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], [_rot(0), _rot(10), _rot(20)], [[0, 0, 0]] * 3)
    seq = self_sequence(p, [2, 0])
    assert torch.allclose(seq.expression, torch.tensor([[0.5, 0.6], [0.1, 0.2]]))
    assert torch.allclose(seq.rotation[0], p["rotation"][2]) and seq.joint_pose.shape == (2, 0)
    assert (
        select_frames("1:", 3) == [1, 2]
        and select_frames([-1], 3) == [2]
        and select_frames(None, 2) == [0, 1]
    )
    with pytest.raises(ReenactError, match="select"):
        select_frames([5], 3)
    assert reference_frame(p, "neutral") == 0 and reference_frame(p, "frontal") == 0
    assert reference_frame(p, "first") == 0 and reference_frame(p, 2) == 2
    rot, trans, i = reference_pose(p, "facing")  # camera at (0,0,0.7), head at the origin: no turn
    assert torch.allclose(rot, torch.zeros(3), atol=1e-6) and i == 0
    turned = facing_rotation(CAM_R, p["t"], torch.tensor([0.1, 0.0, 0.0]))
    face_dir = axis_angle_to_matrix(turned) @ torch.tensor([0.0, 0.0, 1.0])
    assert torch.allclose(
        face_dir, torch.nn.functional.normalize(torch.tensor([-0.1, 0.0, 0.7]), dim=0), atol=1e-6
    )


def test_cross_relative_transfer_by_hand():
    """e = e_tgt_ref + (e_src - e_src_0) clamped to [0,1]; R = (R_s R_s0^T) R_tgt_ref; t = t_ref + s dt."""
    target = _params([[0.2, 0.5, 0.9]], [_rot(pitch=5)], [[0.0, 0.02, 0.0]])
    source = _params(
        [[0.1, 0.1, 0.1], [0.4, 0.0, 0.3]], [_rot(yaw=10), _rot(yaw=40)], [[0, 0, 0], [0.01, 0, 0]]
    )
    seq = cross_sequence(source, target, "relative", "first", "first", translation_scale=0.5)
    assert torch.allclose(seq.expression, torch.tensor([[0.2, 0.5, 0.9], [0.5, 0.4, 1.0]]))
    want = axis_angle_to_matrix(_rot(yaw=30)) @ axis_angle_to_matrix(_rot(pitch=5))
    assert torch.allclose(axis_angle_to_matrix(seq.rotation[1]), want, atol=1e-5)
    assert torch.allclose(
        axis_angle_to_matrix(seq.rotation[0]), axis_angle_to_matrix(_rot(pitch=5)), atol=1e-5
    )
    assert torch.allclose(seq.translation, torch.tensor([[0.0, 0.02, 0.0], [0.005, 0.02, 0.0]]), atol=1e-7)

    # a source world turned 90 deg about +y relative to its camera: source x motion is target -z motion
    source["R"] = CAM_R @ axis_angle_to_matrix(_rot(yaw=90))
    seq = cross_sequence(source, target, "relative", "first", "first", translation_scale=1.0)
    assert torch.allclose(seq.translation[1], torch.tensor([0.0, 0.02, -0.01]), atol=1e-6)
    assert torch.allclose(axis_angle_to_matrix(seq.rotation[1]), want, atol=1e-5)  # yaw commutes with yaw

    held = cross_sequence(source, target, "expression_only", "first", "first")
    assert torch.allclose(held.rotation, target["rotation"].expand(2, 3)) and held.expression[1, 2] == 1.0
    absolute = cross_sequence(source, target, "absolute", expression_range=None)
    assert torch.equal(absolute.expression, source["expression"])
    with pytest.raises(ReenactError, match="same head model"):
        cross_sequence(_params([[0.1, 0.2]], [_rot()], [[0, 0, 0]]), target)


def test_cross_flame_joints_relative():
    """FLAME joints: J_i = (J_src_i J_src_0^T) J_tgt_ref per joint (neck, jaw, eyes)."""
    jt = torch.zeros(1, 12)
    jt[0, 3:6] = _rot(pitch=10)  # target jaw slightly open
    js = torch.zeros(2, 12)
    js[1, 3:6] = _rot(pitch=20)
    target = _params([[0.0]], [_rot()], [[0, 0, 0]], joint_pose=jt)
    source = _params([[0.0], [0.0]], [_rot(), _rot()], [[0, 0, 0]] * 2, joint_pose=js)
    seq = cross_sequence(source, target, expression_range=None, pose_frame="first")
    assert torch.allclose(seq.joint_pose[1, 3:6], _rot(pitch=30), atol=1e-5)
    assert torch.allclose(seq.joint_pose[:, :3], torch.zeros(2, 3), atol=1e-6)


def test_head_and_neck_pose_overrides():
    seq = ParamSequence(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 3), torch.zeros(3, 0))
    assert torch.allclose(keyframe_curve([0, 90], 3), torch.tensor([0.0, 45.0, 90.0]))
    turned = apply_head_pose(seq, yaw=[0, 90])
    assert torch.allclose(turned.rotation[1], torch.tensor([0.0, math.radians(45), 0.0]), atol=1e-5)
    # ICT (no joints): the neck pose is the rigid head pose
    assert torch.allclose(apply_neck_pose(seq, yaw=[0, 90]).rotation, turned.rotation)
    flame = ParamSequence(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 3), torch.zeros(3, 12))
    necked = apply_neck_pose(flame, pitch=20)
    assert torch.allclose(necked.rotation, torch.zeros(3, 3))
    assert torch.allclose(necked.joint_pose[:, 0], torch.full((3,), math.radians(20)), atol=1e-5)
    assert torch.allclose(necked.joint_pose[:, 3:], torch.zeros(3, 9))


def test_preset_ramp_and_mix_by_hand():
    w = ramp_weights(21, 0.2)  # u = i/20: eases over u in [0, 0.2] and [0.8, 1]
    assert w[0] == 0 and w[-1] == 0 and torch.allclose(w[2], torch.tensor(0.5)) and (w[4:17] == 1).all()
    assert torch.allclose(w, w.flip(0)) and (w[:11].diff() >= 0).all()
    presets = {"a": torch.tensor([0.6, 0.0, 0.8]), "b": torch.tensor([0.0, 0.4, 0.8])}
    mixed = mix_presets(presets, {"a": 0.5, "b": 1.0})
    assert torch.allclose(mixed, torch.tensor([0.3, 0.4, 1.0]))  # 0.4 + 0.8 = 1.2 clamped to 1
    seq = preset_sequence(presets, {"a": 0.5, "b": 1.0}, 21, 0.2)
    assert torch.allclose(seq, w[:, None] * mixed[None])
    with pytest.raises(ReenactError, match=r"unknown expression preset 'smiel'.*did you mean \['smile'\]"):
        mix_presets({"smile": presets["a"], "surprise": presets["b"]}, {"smiel": 1.0})


def test_presets_in_config_are_valid_ict_weights(ict_model):
    presets = load_presets("ict")
    assert set(PRESET_NAMES) <= set(presets)
    vectors = preset_vectors(presets, ict_model)
    assert vectors["neutral"].abs().sum() == 0
    for name in PRESET_NAMES[:4] + ("surprise",):
        v = vectors[name]
        assert v.abs().sum() > 0 and v.min() >= 0 and v.max() <= 1, name
    assert vectors["smile"][ict_model.expression_index("mouthSmile_L")] > 0.5
    assert vectors["surprise"][ict_model.expression_index("jawOpen")] > 0.3
    with pytest.raises(ReenactError, match=r"preset 'bad'.*mouthSmile"):
        preset_vectors({"bad": {"mouthSmile": 1.0}}, ict_model)


def test_orbit_cameras_circle_around_centre():
    centre = torch.tensor([0.01, 0.02, 0.0])
    R, t = look_at(torch.tensor([0.01, 0.02, 0.7]), centre)
    base = Cameras(intrinsics_from_fov(24.0, 64, 64), R, t, (64, 64))
    cams = orbit_cameras(base, 12, yaw_range_deg=40.0, pitch_deg=20.0, center=centre)
    c = cams.centers()  # (12,3)
    d = (c - centre).norm(dim=-1)
    assert torch.allclose(d, torch.full((12,), 0.7), atol=1e-5)
    assert torch.allclose(c[:, 1], torch.full((12,), 0.02 + 0.7 * math.sin(math.radians(20))), atol=1e-5)
    horizontal = c[:, [0, 2]] - centre[[0, 2]]
    yaw = torch.rad2deg(torch.atan2(horizontal[:, 0], horizontal[:, 1]))
    assert torch.allclose(yaw, 40.0 * torch.sin(2 * math.pi * torch.arange(12) / 12), atol=1e-3)
    # every camera looks at the centre: it projects to the principal point
    pix = cams.project(centre.expand(12, 1, 3))
    assert torch.allclose(pix, torch.full((12, 1, 2), 32.0), atol=1e-3)
    K2 = scale_intrinsics(base.K[0], (64, 64), (128, 96))
    assert torch.allclose(K2[0, [0, 2]], base.K[0, 0, [0, 2]] * 1.5) and torch.allclose(
        K2[1], base.K[0, 1] * 2
    )


def test_video_writer_even_sizes_and_atomic(tmp_path):
    import imageio.v3 as iio

    frames = np.random.default_rng(0).integers(0, 255, (5, 21, 30, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=10)
    video = iio.imread(path, index=None, plugin="pyav")
    assert video.shape == (5, 22, 30, 3)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32), fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no partial file left


@pytest.fixture(scope="module")
def avatar_ckpt(tiny_subject, tmp_path_factory):
    return tiny_avatar_checkpoint(tiny_subject, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def source_subject(tiny_subject, tmp_path_factory):
    """A driving subject: a tracking.npz whose head turns and whose jaw opens."""
    p = dict(np.load(tiny_subject / "ground_truth" / "params.npz"))
    n = 6
    jaw = p["expression"][:n].copy()
    jaw[:, 26] = np.linspace(0, 0.8, n)  # jawOpen
    yaw = euler_to_axis_angle(torch.linspace(0, 0.5, n), torch.zeros(n), torch.zeros(n)).numpy()
    root = tmp_path_factory.mktemp("source")
    np.savez(
        root / "tracking.npz",
        **{**p, "expression": jaw, "rotation": yaw, "translation": p["translation"][:n]},
    )
    return root


@pytest.mark.parametrize(
    ("mode", "extra", "n_frames", "size"),
    [
        ("self", [], 2, (48, 48)),
        ("cross", ["source_frames=1:"], 5, (48, 48)),
        ("preset", ["mix={smile: 0.6, surprise: 0.5}", "n_frames=4", "pose.yaw=[0,20]"], 4, (48, 48)),
        ("orbit", ["n_frames=3", "image_size=[36,50]", "neck.pitch=10"], 3, (36, 50)),
    ],
)
def test_reenact_modes_write_mp4_and_frames(
    avatar_ckpt, source_subject, tmp_path, mode, extra, n_frames, size
):
    import imageio.v3 as iio

    from src.cli.reenact import run

    out = tmp_path / "out"
    cfg = compose_train(
        [f"ckpt_path={avatar_ckpt}", f"mode={mode}", f"source={source_subject}", f"out_dir={out}",
         "progress=false", "fps=10", *extra],
        output_dir=out, config_name="reenact",
    )  # fmt: skip
    info = run(cfg)
    assert info["n_frames"] == n_frames
    video = iio.imread(out / f"{mode}.mp4", index=None, plugin="pyav")
    assert video.shape == (n_frames, *size, 3)
    assert video.std() > 1  # not a blank frame
    pngs = sorted((out / "frames").glob("*.png"))
    assert len(pngs) == n_frames and iio.imread(pngs[0]).shape == (*size, 3)
    seq = np.load(out / "sequence.npz")
    assert seq["expression"].shape[0] == n_frames and seq["K"].shape == (n_frames, 3, 3)
    if mode == "self":
        assert info["frames"] == [10, 11]  # the held-out test frames


def test_reenact_errors(avatar_ckpt, tmp_path):
    from src.cli.reenact import run

    def cfg(*extra):
        return compose_train(
            [f"ckpt_path={avatar_ckpt}", f"out_dir={tmp_path}", "progress=false", *extra],
            output_dir=tmp_path, config_name="reenact",
        )  # fmt: skip

    with pytest.raises(ReenactError, match="did you mean"):
        run(cfg("mode=preset", "preset=suprise"))
    with pytest.raises(ReenactError, match="needs source"):
        run(cfg("mode=cross"))
    with pytest.raises(ReenactError, match="unknown mode"):
        run(cfg("mode=dance"))


def test_composite_over_colour_and_transparent():
    from src.reenact.pipeline import composite

    image = torch.rand(2, 3, 4, 5)
    cov = torch.zeros(2, 1, 4, 5)
    cov[..., 1:3, 1:4] = 1.0
    out = {"image": image, "coverage": cov}
    assert torch.equal(composite(out, None), image)
    white = composite(out, [1.0, 1.0, 1.0])
    assert torch.equal(white[..., 1:3, 1:4], image[..., 1:3, 1:4]) and (white[..., 0, :] == 1).all()
    rgba = composite({"image": image, "matte": cov}, "transparent")
    assert rgba.shape == (2, 4, 4, 5) and torch.equal(rgba[:, 3:], cov)
    with pytest.raises(ReenactError, match="three values"):
        composite(out, [2.0, 0.0, 0.0])
    with pytest.raises(ReenactError, match="transparent"):
        composite(out, "green")


def test_reenact_transparent_background_writes_rgba(avatar_ckpt, tmp_path):
    import imageio.v3 as iio

    from src.cli.reenact import run

    out = tmp_path / "out"
    cfg = compose_train(
        [f"ckpt_path={avatar_ckpt}", "mode=preset", "n_frames=2", "background=transparent", f"out_dir={out}",
         "progress=false"],
        output_dir=out, config_name="reenact",
    )  # fmt: skip
    run(cfg)
    png = iio.imread(sorted((out / "frames").glob("*.png"))[0])
    assert png.shape[-1] == 4 and 0 < (png[..., 3] > 127).mean() < 1  # the head opaque, the rest clear
    assert iio.imread(out / "preset.mp4", index=None, plugin="pyav").shape[-1] == 3
