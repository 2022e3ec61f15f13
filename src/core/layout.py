"""The on-disk layout of one processed subject (synthetic or from a real video).

See docs/data_layout.md for the full description. In short::

    <root>/meta.json                  what is there (written last; "complete": true marks a usable cache)
    <root>/frames/000000.png          RGB uint8
    <root>/masks/000000.png           foreground alpha, uint8 0..255
    <root>/segmentation/000000.png    label ids (SEG_LABELS), uint8
    <root>/normals/000000.png         camera-space unit normals as (n+1)/2*255, 0 on background
    <root>/landmarks68.npy            (N,68,2) float32 pixels (x,y), origin at the image's top-left corner
    <root>/landmarks478.npy           (N,478,2) mediapipe landmarks (real videos only)
    <root>/valid.png                  crop validity, uint8 255 inside the video frame, 0 padded (videos)
    <root>/background.png             static-camera background plate, RGB uint8 (videos, static camera)
    <root>/background_coverage.png    fraction of frames each plate pixel was seen, uint8 (0: inpainted)
    <root>/background_motion.npy      (N,2,3) float32 plate -> frame pixel maps (small camera motion)
    <root>/occlusion/000000.png       occluder over the face (hand, object), uint8 255 occluded (videos)
    <root>/tracking.npz               fitted parameters (written by tracking)
    <root>/ground_truth/params.npz    true parameters (synthetic only), same keys as tracking.npz
    <root>/ground_truth/vertices.npy  (N,V,3) float32 true posed vertices, metres, world frame
    <root>/ground_truth/landmarks68_3d.npy  (N,68,3) true 3D landmarks; albedo.png the true texture
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.utils.io import read_png, write_json

LAYOUT_VERSION = 1
SEG_LABELS = ["background", "skin", "neck", "hair", "brows", "eyes", "lips", "mouth_interior", "teeth"]
PARAM_KEYS = ("identity", "expression", "rotation", "translation", "joint_pose", "K", "R", "t")
OPTIONAL_ITEMS = (
    "masks",
    "segmentation",
    "normals",
    "landmarks68",
    "landmarks478",
    "valid",
    "background",
    "occlusion",
    "tracking",
    "ground_truth",
)


class LayoutError(ValueError):
    """A subject folder is missing, incomplete or inconsistent; the message says how to fix it."""


class DataMismatchError(LayoutError):
    """The data would be rebuilt differently from the data a checkpoint was trained on (other settings,
    another code version or a changed video); refused instead of silently rebuilt."""


def frame_name(i: int) -> str:
    """File stem of frame ``i`` (six digits)."""
    return f"{i:06d}"


@dataclass
class SubjectLayout:
    """Paths and readers for one subject folder."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    @property
    def tracking_path(self) -> Path:
        """Fitted head-model parameters (written by tracking)."""
        return self.root / "tracking.npz"

    @property
    def gt_params_path(self) -> Path:
        """True head-model parameters (synthetic subjects only)."""
        return self.root / "ground_truth" / "params.npz"

    @property
    def gt_vertices_path(self) -> Path:
        """(N,V,3) true posed vertices in metres (synthetic subjects only)."""
        return self.root / "ground_truth" / "vertices.npy"

    @property
    def gt_landmarks3d_path(self) -> Path:
        """(N,68,3) true 3D landmarks in metres, world frame (synthetic subjects only)."""
        return self.root / "ground_truth" / "landmarks68_3d.npy"

    @property
    def gt_albedo_path(self) -> Path:
        """The true albedo texture, PNG (synthetic subjects only)."""
        return self.root / "ground_truth" / "albedo.png"

    @property
    def landmarks68_path(self) -> Path:
        """(N,68,2) landmarks in pixels."""
        return self.root / "landmarks68.npy"

    @property
    def landmarks478_path(self) -> Path:
        """(N,478,2) mediapipe landmarks in pixels (real videos only)."""
        return self.root / "landmarks478.npy"

    def resolve_source(self, source: str) -> str:
        """``"auto"`` -> "tracking" when tracking.npz exists, else "ground_truth"; other names unchanged."""
        if source != "auto":
            return source
        return "tracking" if self.tracking_path.is_file() else "ground_truth"

    @property
    def valid_path(self) -> Path:
        """(H,W) crop-validity mask, one for the sequence (real videos)."""
        return self.root / "valid.png"

    @property
    def background_path(self) -> Path:
        """(H,W,3) static background plate (real videos with a static camera)."""
        return self.root / "background.png"

    @property
    def background_coverage_path(self) -> Path:
        """(H,W) uint8 fraction of frames in which each plate pixel was background (0: inpainted)."""
        return self.root / "background_coverage.png"

    @property
    def background_motion_path(self) -> Path:
        """(N,2,3) float32 affine maps from plate pixels to each frame's pixels (camera motion)."""
        return self.root / "background_motion.npy"

    def params_path(self, source: str) -> Path:
        """Parameter file of ``source``: "tracking" or "ground_truth"."""
        return self.tracking_path if source == "tracking" else self.gt_params_path

    def read_gt_vertices(self) -> np.ndarray | None:
        """(N,V,3) float32 ground-truth posed vertices, or None when the subject has none."""
        path = self.gt_vertices_path
        return np.load(path).astype(np.float32) if path.exists() else None

    def frame_path(self, kind: str, i: int) -> Path:
        """Path of frame ``i`` of an image stream (frames, masks, segmentation, normals, occlusion)."""
        return self.root / kind / f"{frame_name(i)}.png"

    def exists(self) -> bool:
        """True when the folder holds a complete, readable meta.json."""
        try:
            return bool(self.read_meta().get("complete"))
        except LayoutError:
            return False

    def read_meta(self) -> dict:
        """Read meta.json.

        Raises:
            LayoutError: missing, unreadable or from another layout version.
        """
        if not self.meta_path.exists():
            raise LayoutError(
                f"{self.root} is not a processed subject (no meta.json); "
                "generate it or preprocess a video into it"
            )
        try:
            meta = json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as e:
            raise LayoutError(
                f"{self.meta_path} is corrupt ({e}); delete the folder and regenerate it"
            ) from e
        if meta.get("layout_version") != LAYOUT_VERSION:
            raise LayoutError(
                f"{self.root} has layout version {meta.get('layout_version')}, expected {LAYOUT_VERSION}; "
                "delete the folder and regenerate it"
            )
        return meta

    def write_meta(self, meta: dict) -> None:
        """Atomically write meta.json (call last, with ``complete: True``)."""
        write_json(self.meta_path, {"layout_version": LAYOUT_VERSION, **meta})

    def validate(self) -> dict:
        """Check that every file meta.json announces is present.

        Returns:
            The meta dict.

        Raises:
            LayoutError: naming the first missing file and the fix.
        """
        meta = self.read_meta()
        if not meta.get("complete"):
            raise LayoutError(f"{self.root} is incomplete (interrupted run?); re-run to finish it")
        n = meta["n_frames"]
        for kind in ("frames", "masks", "segmentation", "normals", "occlusion"):
            if kind == "frames" or meta["available"].get(kind):
                for i in (0, n - 1):
                    if not self.frame_path(kind, i).exists():
                        raise LayoutError(
                            f"{self.frame_path(kind, i)} is missing; delete {self.root} and regenerate"
                        )
        files = (("landmarks68", self.landmarks68_path), ("tracking", self.tracking_path),
                 ("valid", self.valid_path), ("background", self.background_path))  # fmt: skip
        for key, path in files:
            if meta["available"].get(key) and not path.exists():
                raise LayoutError(f"{path} is missing although meta.json lists it; regenerate {self.root}")
        return meta

    def read_image(self, kind: str, i: int) -> np.ndarray:
        """uint8 image of stream ``kind`` at frame ``i``: (H,W,3) or (H,W)."""
        return read_png(self.frame_path(kind, i))

    def read_params(self, source: str) -> dict[str, np.ndarray]:
        """Per-subject parameters.

        Args:
            source: "tracking" (tracking.npz) or "ground_truth" (ground_truth/params.npz).

        Returns:
            identity (Ni,), expression (N,Ne), rotation (N,3), translation (N,3), joint_pose (N,Nj),
            K (3,3), R (3,3), t (3,) as float32 arrays.
        """
        path = self.params_path(source)
        if not path.exists():
            fix = (
                "run tracking first" if source == "tracking" else "only synthetic subjects have ground truth"
            )
            raise LayoutError(f"{path} not found: {fix}")
        with np.load(path) as z:
            missing = [k for k in PARAM_KEYS if k not in z.files]
            if missing:
                raise LayoutError(f"{path} lacks {missing}; regenerate it")
            return {k: z[k].astype(np.float32) for k in PARAM_KEYS}
