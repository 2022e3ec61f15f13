"""Named expression presets (ICT-FaceKit ARKit blendshape weights) and their mixing and ramping.

Presets live in config (``conf/presets/ict.yaml``): ``name -> {blendshape: weight}`` with ARKit names
as in :attr:`src.headmodel.ict.ICTHeadModel.expression_names`; unnamed blendshapes are 0. FLAME has no
named expressions, so presets need an ICT avatar.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from src.reenact.sequences import ReenactError

PRESET_DIR = Path(__file__).resolve().parents[2] / "conf" / "presets"


def load_presets(name_or_path: str | Path = "ict") -> dict[str, dict[str, float]]:
    """Read a preset file: a name in ``conf/presets`` (e.g. "ict") or a path to a YAML file.

    Returns:
        {preset: {blendshape: weight}}.
    """
    from omegaconf import OmegaConf

    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ReenactError(f"preset file {path} not found; pass a name in {PRESET_DIR} or a YAML path")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {str(k): dict(v or {}) for k, v in data.items()}


def preset_vectors(presets: Mapping[str, Mapping[str, float]], headmodel) -> dict[str, torch.Tensor]:
    """Turn named presets into expression vectors of a head model.

    Args:
        presets: {preset: {blendshape: weight}}.
        headmodel: a head model with named expressions (``expression_vector``, i.e. ICT-FaceKit).

    Returns:
        {preset: (n_expression,) tensor}.

    Raises:
        ReenactError: the head model has no named expressions, or a blendshape name is unknown (the
            message names the preset and suggests close matches).
    """
    if not hasattr(headmodel, "expression_vector"):
        raise ReenactError(
            f"expression presets are ARKit blendshape weights but {type(headmodel).__name__} has no named "
            "expressions; use an ICT-FaceKit avatar, or mode=self/cross/orbit"
        )
    out = {}
    for name, weights in presets.items():
        try:
            out[name] = headmodel.expression_vector(dict(weights or {}))
        except ValueError as err:
            raise ReenactError(f"preset '{name}': {err}") from None
    return out


def mix_presets(
    presets: Mapping[str, torch.Tensor],
    mix: Mapping[str, float],
    expression_range: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Weighted sum of preset vectors, e.g. ``{"smile": 0.7, "surprise": 0.5}``.

    Args:
        presets: {preset: (n_expression,) tensor} (see :func:`preset_vectors`).
        mix: {preset: weight}.
        expression_range: clamp of the result (ICT weights live in [0,1]) or None.

    Returns:
        (n_expression,) tensor.

    Raises:
        ReenactError: an unknown preset name (with close matches and the list of presets) or an empty mix.
    """
    if not mix:
        raise ReenactError("empty preset mix; give e.g. mix={smile: 1.0} or preset=smile")
    for name in mix:
        if name not in presets:
            close = difflib.get_close_matches(str(name), list(presets), n=3)
            hint = f" (did you mean {close}?)" if close else ""
            raise ReenactError(f"unknown expression preset '{name}'{hint}; presets are {sorted(presets)}")
    first = next(iter(presets.values()))
    out = torch.zeros_like(first)
    for name, w in mix.items():
        out = out + float(w) * presets[name].to(first)
    return out.clamp(*expression_range) if expression_range is not None else out


def ramp_weights(n_frames: int, ramp: float) -> torch.Tensor:
    """Ease in, hold, ease out: 0 at the first and last frame, 1 in the middle.

    ``u = i/(N-1)``; ``w = s(u/ramp)`` for ``u < ramp``, 1 in between, ``s((1-u)/ramp)`` for ``u > 1-ramp``,
    with the cosine ease ``s(x) = (1 - cos(pi x)) / 2``. ``ramp = 0`` gives a constant 1.

    Args:
        n_frames: N.
        ramp: fraction of the sequence spent easing in (and again easing out), in [0, 0.5].

    Returns:
        (N,) weights in [0,1].
    """
    if not 0 <= ramp <= 0.5:
        raise ReenactError(
            f"ramp={ramp} is outside [0, 0.5]; it is the fraction of frames easing in (and out)"
        )
    if ramp == 0 or n_frames == 1:
        return torch.ones(n_frames)
    u = torch.linspace(0, 1, n_frames)
    x = (torch.minimum(u, 1 - u) / ramp).clamp(max=1)
    return 0.5 - 0.5 * torch.cos(math.pi * x)


def preset_sequence(
    presets: Mapping[str, torch.Tensor],
    mix: Mapping[str, float],
    n_frames: int,
    ramp: float = 0.25,
    expression_range: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Expressions easing from neutral (zero) to the mixed preset and back.

    Args:
        presets: {preset: (n_expression,) tensor}.
        mix: {preset: weight}.
        n_frames: N.
        ramp: see :func:`ramp_weights`.
        expression_range: clamp of the mixed target.

    Returns:
        (N,n_expression) expressions ``ramp_weights(N, ramp)[:, None] * mix_presets(...)``.
    """
    target = mix_presets(presets, mix, expression_range)
    return ramp_weights(n_frames, ramp).to(target)[:, None] * target[None]
