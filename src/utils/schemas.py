"""Config schemas: the keys each ``model``, ``data`` and ``preprocess`` option may have.

Each group file names its schema first in its defaults list (``- /schema/model/nha@_here_``), so Hydra
merges the YAML into the dataclass while it composes: a key the schema lacks, in the group file, an
experiment or a command-line override, fails at compose time with its name and the schema's class,
instead of being ignored or failing deep inside a constructor (``+key=value`` still forces a new key).
The schemas hold no values: every leaf is ``MISSING`` and typed ``Any`` (Hydra's own type checks would
reject interpolations and nulls the configs use), and the values are written once, in the YAML. Nodes of
named entries (``stages``, learning rates, loss weights) are open dicts whose names the model checks.
Registered in Hydra's ConfigStore when :mod:`src.utils.confdir` is imported (every entry point does).
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

OPEN = dict[str, Any]  # a node of named entries (its names are checked by the code that reads it)


def schema(name: str, keys: str, **nodes: Any) -> type:
    """A dataclass whose fields are ``keys`` (space-separated; each ``MISSING``, typed ``Any``) and ``nodes``.

    Args:
        name: the class name (Hydra's error messages show it).
        keys: the leaf keys.
        **nodes: key -> a nested schema class, :data:`OPEN`, ``dict[str, <schema>]`` (named entries of one
            schema), or ``None`` (a leaf whose default is null, for a key the YAML may leave out).
    """
    fields: list[tuple[str, Any, Any]] = [(k, Any, field(default=MISSING)) for k in keys.split()]
    for key, node in nodes.items():
        if node is None:
            fields.append((key, Any, field(default=None)))
        elif isinstance(node, type):
            fields.append((key, node, field(default_factory=node)))
        else:  # OPEN or dict[str, schema]
            fields.append((key, node, field(default_factory=dict)))
    cls = make_dataclass(name, fields)
    cls.__module__ = __name__  # pickle (Lightning's hparams, checkpoints) finds it here by its name
    return cls


_DATA = "_target_ _recursive_ root headmodel batch_size num_workers val_frames test_frames params_source"
_MODEL = "_target_ _recursive_ headmodel renderer loss metrics"

DetectorSchema = schema("DetectorSchema", "model_selection min_confidence max_side")
CropSchema = schema("CropSchema", "scale shift_y min_scale smooth_window pad_mode")
PreprocessSchema = schema(
    "PreprocessSchema",
    "resolution max_fps max_frames start_s max_seconds allow_truncated min_frames min_face_size "
    "multi_face_ratio landmarks68 fan_weights dlib_upsample landmarks68_max_disagreement segmentation "
    "face_parts normals background background_holdout occlusion keep_work",
    detector=DetectorSchema,
    crop=CropSchema,
)
SubjectDataSchema = schema("SubjectDataSchema", f"{_DATA} generator")
SyntheticDataSchema = schema("SyntheticDataSchema", f"{_DATA} generator")
VideoDataSchema = schema(
    "VideoDataSchema", f"{_DATA} path cache_dir tracking epoch_steps", preprocess=PreprocessSchema
)
NHANetSchema = schema(
    "NHANetSchema",
    "hidden_regions offset_regions geometry texture mapping uv_embedding pos_freqs background_size "
    "background_residual offset_bounds neck",
)
StageSchema = schema("StageSchema", "steps", lr=OPEN, loss=OPEN, resolution=None, supersample=None)
InitNoiseSchema = schema("InitNoiseSchema", "identity expression rotation_deg translation_m")
HeldoutFitSchema = schema(
    "HeldoutFitSchema",
    "steps lr batch_size resolution supersample tol rotation_lr_scale translation_lr_scale",
    weights=OPEN,
)
NHAModelSchema = schema(
    "NHAModelSchema",
    f"{_MODEL} frozen supersample sigma background seed optimizer",
    net=NHANetSchema,
    stages=dict[str, StageSchema],
    init_noise=InitNoiseSchema,
    heldout_fit=HeldoutFitSchema,
)
GeneratorSchema = schema("GeneratorSchema", "size style_dim face background style")
SelfieModelSchema = schema(
    "SelfieModelSchema",
    f"{_MODEL} hidden_regions discriminator optimizer_g optimizer_d r1 ema d_condition adv_start_epoch "
    "cache_conditioning seed",
    generator=GeneratorSchema,
)
VertexColorModelSchema = schema(
    "VertexColorModelSchema", f"{_MODEL} hidden_regions background_size sigma optimizer scheduler"
)

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
