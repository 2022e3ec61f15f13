"""Smooth, deterministic expression and head-pose trajectories for the synthetic subject."""

from __future__ import annotations

import numpy as np


def _smooth_noise(
    rng: np.random.Generator, n: int, fps: float, bandwidth_hz: float, n_waves: int = 4
) -> np.ndarray:
    """Sum of random sinusoids below ``bandwidth_hz``, scaled and clipped to [-1, 1]. Shape (n,)."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    total = 0.0
    for _ in range(n_waves):
        f = rng.uniform(0.2, 1.0) * bandwidth_hz
        a = rng.uniform(0.5, 1.0)
        out += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        total += a
    # a fixed bound (not the sequence's own maximum) keeps a longer sequence an extension of a shorter one
    return np.clip(out / (0.7 * total), -1.0, 1.0)


def _pulses(
    rng: np.random.Generator, n: int, fps: float, every_s: tuple[float, float], width_s: float
) -> np.ndarray:
    """Raised-cosine pulses (peak 1) at random intervals. Shape (n,)."""
    out = np.zeros(n)
    t = rng.uniform(0.3, every_s[1]) * fps
    half = max(width_s * fps / 2, 1.0)
    idx = np.arange(n)
    while t < n:
        d = np.abs(idx - t) / half
        out = np.maximum(out, np.where(d < 1, 0.5 * (1 + np.cos(np.pi * d)), 0))
        t += rng.uniform(*every_s) * fps
    return out


def make_trajectory(
    expression_names: list[str],
    n_frames: int,
    fps: float = 25.0,
    seed: int = 0,
    max_yaw_deg: float = 45.0,
    max_pitch_deg: float = 12.0,
    max_roll_deg: float = 6.0,
    max_translation: float = 0.01,
    talk: float = 0.6,
    smile: float = 0.8,
    gaze: float = 0.0,
) -> dict[str, np.ndarray]:
    """A talking, smiling, blinking, brow-raising, head-turning sequence.

    Yaw sweeps the full +-max_yaw range once per ~6 s, so both the training frames and the held-out
    last frames see turned heads.

    Args:
        expression_names: the head model's expression names (ARKit names for ICT).
        n_frames: number of frames.
        fps: frame rate.
        seed: random seed (the sequence is a pure function of the arguments).
        max_yaw_deg, max_pitch_deg, max_roll_deg: head angle limits in degrees.
        max_translation: head translation limit (metres) on each axis.
        talk: peak jawOpen weight while talking.
        smile: peak mouthSmile weight.
        gaze: peak eyeLook weight of wandering, conjugate eye movements (0: the eyes look ahead).

    Returns:
        dict with expression (N,Ne) float32 in [0,1], yaw/pitch/roll (N,) radians, translation (N,3).
    """
    streams = iter(range(1000))

    def rng() -> np.random.Generator:
        # one independent stream per signal, so that a longer sequence starts with the same frames
        return np.random.default_rng([seed, next(streams)])

    n, ne = n_frames, len(expression_names)
    idx = {name: i for i, name in enumerate(expression_names)}
    expr = np.zeros((n, ne))
    t = np.arange(n) / fps

    def put(name: str, values: np.ndarray) -> None:
        if name in idx:
            expr[:, idx[name]] = np.clip(values, 0.0, 1.0)

    # talking: syllable-rate jaw motion gated by slow phrases
    r = rng()
    syll = 0.5 * (1 + np.sin(2 * np.pi * r.uniform(3.0, 4.0) * t + r.uniform(0, 6.28)))
    phrase = np.clip(0.6 + 0.8 * _smooth_noise(rng(), n, fps, 0.3), 0, 1)
    put("jawOpen", talk * syll * phrase)
    put("mouthFunnel", 0.3 * np.clip(_smooth_noise(rng(), n, fps, 1.0), 0, 1) * phrase)
    put("mouthPucker", 0.3 * np.clip(_smooth_noise(rng(), n, fps, 0.8), 0, 1) * phrase)
    # smiles: slow bumps, nearly symmetric
    sm = smile * _pulses(rng(), n, fps, (2.0, 4.0), 1.6)
    put("mouthSmile_L", sm)
    put("mouthSmile_R", sm * rng().uniform(0.85, 1.0))
    put("cheekSquint_L", 0.5 * sm)
    put("cheekSquint_R", 0.5 * sm)
    # blinks: both eyes together, 0.2 s
    blink = _pulses(rng(), n, fps, (1.5, 3.5), 0.25)
    put("eyeBlink_L", blink)
    put("eyeBlink_R", blink)
    # brows
    brow = 0.8 * _pulses(rng(), n, fps, (2.5, 5.0), 1.0)
    for name in ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"):
        put(name, brow)
    put("browDown_L", 0.4 * np.clip(-_smooth_noise(rng(), n, fps, 0.4), 0, 1))
    put("browDown_R", 0.4 * np.clip(-_smooth_noise(rng(), n, fps, 0.4), 0, 1))

    r = rng()
    period = r.uniform(5.0, 7.0)
    yaw = np.deg2rad(max_yaw_deg) * np.sin(2 * np.pi * t / period + r.uniform(0, 2 * np.pi))
    pitch = np.deg2rad(max_pitch_deg) * _smooth_noise(rng(), n, fps, 0.4)
    roll = np.deg2rad(max_roll_deg) * _smooth_noise(rng(), n, fps, 0.3)
    trans = np.stack([max_translation * _smooth_noise(rng(), n, fps, 0.3) for _ in range(3)], -1)
    if gaze > 0:  # drawn after everything else, so the other signals are the same with or without it
        h = gaze * _smooth_noise(rng(), n, fps, 0.5)  # towards the subject's left (+x) when positive
        v = gaze * _smooth_noise(rng(), n, fps, 0.4)
        put("eyeLookOut_L", h)
        put("eyeLookIn_R", h)
        put("eyeLookIn_L", -h)
        put("eyeLookOut_R", -h)
        put("eyeLookUp_L", v)
        put("eyeLookUp_R", v)
        put("eyeLookDown_L", -v)
        put("eyeLookDown_R", -v)
    return {
        "expression": expr.astype(np.float32),
        "yaw": yaw.astype(np.float32),
        "pitch": pitch.astype(np.float32),
        "roll": roll.astype(np.float32),
        "translation": trans.astype(np.float32),
    }
