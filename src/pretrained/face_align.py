"""dlib's face-chip alignment (``get_face_chip_details`` + ``extract_image_chip``) in torch, differentiable.

What dlib does (``dlib/image_transforms/interpolation.h``, ``image_pyramid.h``), reproduced here:

1. Chip target points: dlib's mean face (68-point shape: points 27..54 and 60..64, i.e. nose, eyes and
   outer/upper mouth; 5-point shape: its five points) mapped to ``(padding + p) / (2 padding + 1) * size``.
2. A least-squares similarity transform chip -> image (rotation, scale s, translation); the chip is the
   square of side ``size * s`` centred on the image of the chip centre, rotated by the transform's angle.
3. When that square is more than ~2x the chip, dlib first shrinks a crop around it with its 5x5
   ``[1 4 6 4 1]`` pyramid (``pyramid_down<2>``, one level per halving, coordinates mapped by
   ``p/2 - (1.25, 0.75)``), then samples bilinearly, mapping the chip's corner pixels (0,0), (size-1,0),
   (0,size-1) to the rotated square's corners. Samples whose 2x2 neighbourhood leaves the source are 0.

Differences that remain (checked in tests/test_pretrained_dlib.py): dlib rounds each pyramid level and
the chip to 8-bit integers; here everything stays float (gradients flow to the image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# dlib's mean face shape, points 17..67 of the iBUG 68-point layout, in [0,1] (get_face_chip_details)
MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)  # fmt: skip
MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)  # fmt: skip
# dlib's 5-point shape (shape_predictor_5_face_landmarks: eye corners and the base of the nose)
MEAN_FACE_5 = (
    (0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)  # fmt: skip
# the 68-point indices dlib aligns on: 27..67 without the lower lip (55..59, 65..67)
INDICES_68 = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))
_PYR = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64)


def chip_points(num_parts: int, size: int = 150, padding: float = 0.25) -> tuple[torch.Tensor, list[int]]:
    """dlib's chip-space target points and the landmark indices they pair with.

    Args:
        num_parts: 68 (iBUG layout) or 5 (dlib's 5-point layout).
        size: chip side in pixels.
        padding: dlib's padding (fraction of the face added on each side).

    Returns:
        ((K,2) float64 chip points (x, y), K landmark indices).
    """
    if num_parts == 68:
        idx = list(INDICES_68)
        pts = [(MEAN_FACE_X[i - 17], MEAN_FACE_Y[i - 17]) for i in idx]
    elif num_parts == 5:
        idx, pts = list(range(5)), list(MEAN_FACE_5)
    else:
        raise ValueError(f"face alignment needs 68 (iBUG) or 5 (dlib) landmarks, got {num_parts}")
    p = torch.tensor(pts, dtype=torch.float64)
    return (padding + p) / (2 * padding + 1) * size, idx


def similarity(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (no reflection) mapping ``src`` to ``dst``.

    Args:
        src: (K,2) points.
        dst: (K,2) points.

    Returns:
        (M (2,2) = s*R, t (2,)) with dst ~ src @ M.T + t.
    """
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    var = (s * s).sum()
    a = (s * d).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    m = torch.stack([torch.stack([a, -b]), torch.stack([b, a])])
    return m, md - m @ ms


def _rect_down(r: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """pyramid_down<2>::rect_down of (left, top, right, bottom)."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r: tuple[float, float, float, float]) -> float:
    return max(r[2] - r[0] + 1, 0.0) * max(r[3] - r[1] + 1, 0.0)  # dlib drectangle: width = r - l + 1


def pyramid_down(img: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2> without the integer rounding: 5x5 [1 4 6 4 1]^2/256 filter, stride 2.

    Args:
        img: (C,H,W).

    Returns:
        (C,(H-3)//2,(W-3)//2); output pixel (r,c) is centred on input pixel (2r+2, 2c+2).
    """
    k = (_PYR[:, None] * _PYR[None, :] / 256.0).to(img)
    c = img.shape[0]
    return F.conv2d(img[:, None], k.expand(1, 1, 5, 5), stride=2).view(c, (img.shape[1] - 3) // 2, -1)


def chip_geometry(landmarks: torch.Tensor, size: int, padding: float, hw: tuple[int, int]) -> dict:
    """Where dlib samples a chip: crop box, pyramid level and the chip -> source affine map.

    Args:
        landmarks: (68,2) or (5,2) image pixel coordinates (x, y) of one face.
        size: chip side.
        padding: dlib's padding.
        hw: (H, W) of the image.

    Returns:
        dict: box (left, top, right, bottom) integer crop, level (-1 = no pyramid), affine (2,3) float64
        mapping chip pixel (x, y, 1) to source pixel coordinates in the crop (at that level).
    """
    lm = landmarks.detach().to(torch.float64).cpu()
    src, idx = chip_points(lm.shape[0], size, padding)
    m, t = similarity(src, lm[idx])
    angle = math.atan2(float(m[1, 0]), float(m[0, 0]))
    scale = math.hypot(float(m[0, 0]), float(m[1, 0]))
    cx, cy = (m @ torch.tensor([size / 2.0, size / 2.0], dtype=torch.float64) + t).tolist()
    half = (size * scale - 1) / 2  # dlib's centered_drect: width = right - left + 1
    rect = (cx - half, cy - half, cx + half, cy + half)
    n_pix = size * size
    down, grow = _rect_down(rect), 2.0
    while _area(down) > n_pix:
        down, grow = _rect_down(down), grow * 2 + 2
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3])]
    rot = [(cx + cos * (x - cx) - sin * (y - cy), cy + sin * (x - cx) + cos * (y - cy)) for x, y in corners]
    xs, ys = [p[0] for p in rot], [p[1] for p in rot]
    h, w = hw
    box_f = (max(min(xs) - grow, 0), max(min(ys) - grow, 0))
    box_f += (min(max(xs) + grow, w - 1), min(max(ys) + grow, h - 1))
    box = tuple(int(math.floor(v + 0.5)) for v in box_f)
    r = (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    level = -1
    while _area(_rect_down(r)) > n_pix:
        level, r = level + 1, _rect_down(r)
    rcx, rcy = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2

    def rotate(x: float, y: float) -> tuple[float, float]:
        return rcx + cos * (x - rcx) - sin * (y - rcy), rcy + sin * (x - rcx) + cos * (y - rcy)

    tl, tr, bl = rotate(r[0], r[1]), rotate(r[2], r[1]), rotate(r[0], r[3])
    n = size - 1
    rows = [[(tr[i] - tl[i]) / n, (bl[i] - tl[i]) / n, tl[i]] for i in (0, 1)]
    affine = torch.tensor(rows, dtype=torch.float64)
    return {"box": box, "level": level, "affine": affine}


def _sample(src: torch.Tensor, affine: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear samples of (C,H,W) ``src`` at ``affine @ (x, y, 1)`` on the chip grid (0 outside)."""
    h, w = src.shape[-2:]
    ar = torch.arange(size, dtype=torch.float64)
    gy, gx = torch.meshgrid(ar, ar, indexing="ij")
    px = affine[0, 0] * gx + affine[0, 1] * gy + affine[0, 2]
    py = affine[1, 0] * gx + affine[1, 1] * gy + affine[1, 2]
    valid = (px >= 0) & (py >= 0) & (px.floor() + 1 <= w - 1) & (py.floor() + 1 <= h - 1)
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
    grid = grid.to(device=src.device, dtype=src.dtype)[None]
    out = F.grid_sample(src[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return out * valid.to(device=src.device, dtype=src.dtype)


def align_face_chips(
    images: torch.Tensor, landmarks: torch.Tensor, size: int = 150, padding: float = 0.25
) -> torch.Tensor:
    """dlib's ``get_face_chip(img, shape, size, padding)`` for a batch, differentiable in the images.

    Args:
        images: (N,3,H,W) RGB in [0,1].
        landmarks: (N,68,2) iBUG or (N,5,2) dlib 5-point landmarks, (x, y) pixels of ``images``.
        size: chip side (dlib's face descriptor uses 150).
        padding: dlib's padding (0.25 for the face descriptor).

    Returns:
        (N,3,size,size) aligned chips in [0,1].
    """
    if images.ndim != 4 or landmarks.ndim != 3 or landmarks.shape[0] != images.shape[0]:
        raise ValueError(
            f"expected images (N,3,H,W) and landmarks (N,68|5,2), got {tuple(images.shape)}, "
            f"{tuple(landmarks.shape)}"
        )
    chips = []
    for img, lm in zip(images, landmarks, strict=True):
        g = chip_geometry(lm, size, padding, tuple(img.shape[-2:]))
        left, top, right, bottom = g["box"]
        src = img[:, top : bottom + 1, left : right + 1]
        for _ in range(g["level"] + 1):
            src = pyramid_down(src)
        chips.append(_sample(src, g["affine"], size))
    return torch.stack(chips)
