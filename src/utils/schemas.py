"""Config schemas: the keys each ``model``, ``data`` and ``preprocess`` option may have.

Each group file names its schema first in its defaults list (``- /schema/model/nha@_here_``), so Hydra
merges the YAML into the dataclass while it composes: a key the schema lacks, in the group file, an
experiment or a command-line ``+`` override, fails at compose time with its name and the schema's
class, instead of being ignored or failing deep inside a constructor. The schemas hold no values (every
leaf is ``MISSING`` and typed ``Any``): the values are written once, in the YAML. Nodes of named entries
(``stages``, learning rates, loss weights) are open dicts whose names the model checks itself.
Registered in Hydra's ConfigStore when :mod:`src.utils.confdir` is imported (every entry point does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def _missing() -> Any:
    return field(default=MISSING)


# ----- preprocess (conf/preprocess/default.yaml) -----
@dataclass
class DetectorSchema:
    model_selection: Any = _missing()
    min_confidence: Any = _missing()
    max_side: Any = _missing()


@dataclass
class CropSchema:
    scale: Any = _missing()
    shift_y: Any = _missing()
    min_scale: Any = _missing()
    smooth_window: Any = _missing()
    pad_mode: Any = _missing()


@dataclass
class PreprocessSchema:
    resolution: Any = _missing()
    max_fps: Any = _missing()
    max_frames: Any = _missing()
    start_s: Any = _missing()
    max_seconds: Any = _missing()
    allow_truncated: Any = _missing()
    min_frames: Any = _missing()
    min_face_size: Any = _missing()
    multi_face_ratio: Any = _missing()
    detector: DetectorSchema = field(default_factory=DetectorSchema)
    crop: CropSchema = field(default_factory=CropSchema)
    landmarks68: Any = _missing()
    fan_weights: Any = _missing()
    dlib_upsample: Any = _missing()
    landmarks68_max_disagreement: Any = _missing()
    segmentation: Any = _missing()
    face_parts: Any = _missing()
    normals: Any = _missing()
    background: Any = _missing()
    background_holdout: Any = _missing()
    occlusion: Any = _missing()
    keep_work: Any = _missing()


# ----- data (conf/data/*.yaml) -----
@dataclass
class _DataSchema:
    _target_: str = MISSING
    _recursive_: bool = False
    root: Any = _missing()
    headmodel: Any = _missing()
    batch_size: Any = _missing()
    num_workers: Any = _missing()
    val_frames: Any = _missing()
    test_frames: Any = _missing()
    params_source: Any = _missing()


@dataclass
class SubjectDataSchema(_DataSchema):
    generator: Any = _missing()


@dataclass
class SyntheticDataSchema(_DataSchema):
    generator: Any = _missing()  # conf/synthetic/default.yaml


@dataclass
class VideoDataSchema(_DataSchema):
    path: Any = _missing()
    cache_dir: Any = _missing()
    preprocess: PreprocessSchema = field(default_factory=PreprocessSchema)
    tracking: Any = _missing()  # conf/tracking/default.yaml
    epoch_steps: Any = _missing()


# ----- model (conf/model/*.yaml) -----
@dataclass
class _ModelSchema:
    _target_: str = MISSING
    _recursive_: bool = False
    headmodel: Any = _missing()
    renderer: Any = _missing()
    loss: Any = _missing()
    metrics: Any = _missing()


@dataclass
class NHANetSchema:
    hidden_regions: Any = _missing()
    offset_regions: Any = _missing()
    geometry: Any = _missing()
    texture: Any = _missing()
    mapping: Any = _missing()
    uv_embedding: Any = _missing()
    pos_freqs: Any = _missing()
    background_size: Any = _missing()
    background_residual: Any = _missing()
    offset_bounds: Any = _missing()
    neck: Any = _missing()


@dataclass
class StageSchema:
    steps: Any = _missing()
    lr: dict[str, Any] = field(default_factory=dict)  # parameter group -> learning rate
    loss: dict[str, Any] = field(default_factory=dict)  # loss term -> weight
    resolution: Any = None
    supersample: Any = None


@dataclass
class InitNoiseSchema:
    identity: Any = _missing()
    expression: Any = _missing()
    rotation_deg: Any = _missing()
    translation_m: Any = _missing()


@dataclass
class HeldoutFitSchema:
    steps: Any = _missing()
    lr: Any = _missing()
    batch_size: Any = _missing()
    weights: dict[str, Any] = field(default_factory=dict)
    resolution: Any = _missing()
    supersample: Any = _missing()
    tol: Any = _missing()
    rotation_lr_scale: Any = _missing()
    translation_lr_scale: Any = _missing()


@dataclass
class NHAModelSchema(_ModelSchema):
    net: NHANetSchema = field(default_factory=NHANetSchema)
    stages: dict[str, StageSchema] = field(default_factory=dict)
    frozen: Any = _missing()
    init_noise: InitNoiseSchema = field(default_factory=InitNoiseSchema)
    heldout_fit: HeldoutFitSchema = field(default_factory=HeldoutFitSchema)
    supersample: Any = _missing()
    sigma: Any = _missing()
    background: Any = _missing()
    seed: Any = _missing()
    optimizer: Any = _missing()


@dataclass
class GeneratorSchema:
    size: Any = _missing()
    style_dim: Any = _missing()
    face: Any = _missing()
    background: Any = _missing()
    style: Any = _missing()


@dataclass
class SelfieModelSchema(_ModelSchema):
    hidden_regions: Any = _missing()
    generator: GeneratorSchema = field(default_factory=GeneratorSchema)
    discriminator: Any = _missing()
    optimizer_g: Any = _missing()
    optimizer_d: Any = _missing()
    r1: Any = _missing()
    ema: Any = _missing()
    d_condition: Any = _missing()
    adv_start_epoch: Any = _missing()
    cache_conditioning: Any = _missing()
    seed: Any = _missing()


@dataclass
class VertexColorModelSchema(_ModelSchema):
    hidden_regions: Any = _missing()
    background_size: Any = _missing()
    sigma: Any = _missing()
    optimizer: Any = _missing()
    scheduler: Any = _missing()


SCHEMAS: dict[str, type] = {
    "preprocess/default": PreprocessSchema,
    "data/subject": SubjectDataSchema,
    "data/synthetic": SyntheticDataSchema,
    "data/video": VideoDataSchema,
    "model/nha": NHAModelSchema,
    "model/selfie": SelfieModelSchema,
    "model/vertex_color": VertexColorModelSchema,
}


def register_schemas() -> None:
    """Store every schema as ``schema/<group>/<option>`` in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for key, node in SCHEMAS.items():
        group, name = key.split("/")
        cs.store(group=f"schema/{group}", name=name, node=node)
