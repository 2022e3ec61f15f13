"""What each job runs: the project's entry points as argument lists with Hydra overrides, plus small steps.

A job's ``params`` (JSON in the database) say what to build; :func:`job_steps` turns them into steps,
each either ``{"name", "argv"}`` (a subprocess, run from the project root) or ``{"name", "call"}``
(a function of :mod:`src.app.steps`). Steps are rebuilt on every (re)start, so a resumed training step
gets ``ckpt_path=<run>/checkpoints/last.ckpt``. No shell is involved: values are Hydra-quoted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# user-facing training presets. mesh: (shape, texture, joint) stage steps; image: epochs of the video data's
# data.epoch_steps batches. "standard" (None) is the experiment's own defaults (nha_video / selfie_video).
QUALITY = {
    "mesh": {"tiny": (2, 2, 2), "quick": (40, 50, 90), "standard": None, "high": (120, 300, 600)},
    "image": {"tiny": 1, "quick": 10, "standard": None, "high": 100},
}
RESOLUTIONS = (64, 128, 256, 512)
EXPERIMENTS = {"mesh": "nha_video", "image": "selfie_video"}
_PLAIN = re.compile(r"^[A-Za-z0-9_./:+-]+$")


def hydra_value(value: Any) -> str:
    """A Hydra override value: plain if safe, else single-quoted with escapes (paths with spaces...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def presets(project_root: str | Path) -> dict[str, dict[str, float]]:
    """The expression presets of ``conf/presets/ict.yaml`` (name -> blendshape weights)."""
    with open(Path(project_root) / "conf" / "presets" / "ict.yaml") as f:
        return {str(k): v for k, v in yaml.safe_load(f).items() if isinstance(v, dict)}


def _extra(cfg: dict[str, Any], key: str, prefix: str = "") -> list[str]:
    return [f"{prefix}{o}" for o in cfg.get("EXTRA_OVERRIDES", {}).get(key, [])]


def _preprocess_steps(cfg: dict[str, Any], video: str, subject: Path, hydra_dir: Path, resolution: int):
    py = cfg["PYTHON"]
    return [
        {
            "name": "preprocess",
            "argv": [
                py,
                "-m",
                "src.preprocess",
                f"video={hydra_value(video)}",
                f"out_dir={hydra_value(subject)}",
                f"preprocess.resolution={resolution}",
                f"hydra.run.dir={hydra_value(hydra_dir / 'preprocess')}",
                *_extra(cfg, "preprocess", "preprocess."),
            ],
        },
        {
            "name": "tracking",
            "argv": [
                py,
                "-m",
                "src.tracking",
                f"root={hydra_value(subject)}",
                f"hydra.run.dir={hydra_value(hydra_dir / 'tracking')}",
                *_extra(cfg, "tracking", "tracking."),
            ],
        },
    ]


def train_overrides(cfg: dict[str, Any], p: dict[str, Any], jdir: Path) -> list[str]:
    """Hydra overrides of ``train.py`` for a training job's settings (family, resolution, quality, shapes)."""
    family = p["family"]
    ov = [
        f"experiment={EXPERIMENTS[family]}",
        f"data.path={hydra_value(p['video'])}",
        f"data.root={hydra_value(jdir / 'subject')}",
        f"data.preprocess.resolution={int(p['resolution'])}",
        f"headmodel.n_identity={int(p['n_identity'])}",
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={hydra_value(jdir / 'run')}",
    ]
    preset = QUALITY[family][p["quality"]]
    if family == "mesh" and preset is not None:  # trainer.max_steps follows the stages
        ov += [f"model.stages.{name}.steps={n}" for name, n in zip(("shape", "texture", "joint"), preset)]
        ov += ["trainer.check_val_every_n_epoch=1"]
    elif preset is not None:
        ov += [f"trainer.max_epochs={preset}", f"trainer.check_val_every_n_epoch={max(1, preset // 5)}"]
    ov += _extra(cfg, "tracking", "data.tracking.") + _extra(cfg, "preprocess", "data.preprocess.")
    return ov + _extra(cfg, "train")


def reenact_overrides(cfg: dict[str, Any], p: dict[str, Any], out: Path) -> list[str]:
    """Hydra overrides of ``reenact.py`` for a preset/mix (with pose and neck) or a cross reenactment."""
    ov = [
        f"ckpt_path={hydra_value(p['ckpt'])}",
        f"out_dir={hydra_value(out)}",
        f"hydra.run.dir={hydra_value(out)}",
        "progress=false",
    ]
    if p["mode"] == "cross":
        ov += ["mode=cross", f"source={hydra_value(p['source'])}", "name=cross"]
    elif p["mode"] == "orbit":
        ov += ["mode=orbit", f"n_frames={int(p.get('n_frames', 24))}", "name=orbit"]
    else:
        mix = {k: float(v) for k, v in p.get("mix", {}).items() if float(v) != 0.0}
        if mix:
            ov.append("mix={" + ",".join(f"{k}:{v:.3f}" for k, v in sorted(mix.items())) + "}")
        else:
            ov.append("preset=neutral")
        n = 1 if p.get("preview") else int(p.get("n_frames", 30))
        ov += ["mode=preset", f"n_frames={n}", f"name={'preview' if p.get('preview') else 'preset'}"]
        if p.get("preview"):
            ov.append("ramp=0.0")
    for group in ("pose", "neck"):
        for axis, deg in (p.get(group) or {}).items():
            if deg not in (None, "") and float(deg) != 0.0:
                ov.append(f"{group}.{axis}={float(deg):.2f}")
    return ov + _extra(cfg, "reenact")


def job_steps(cfg: dict[str, Any], kind: str, p: dict[str, Any], jdir: Path) -> list[dict[str, Any]]:
    """The steps of a job of ``kind`` with params ``p`` whose folder is ``jdir``.

    Args:
        cfg: the app settings (``PYTHON``, ``EXTRA_OVERRIDES``).
        kind: preprocess | train | reenact | cross.
        p: the job's params.
        jdir: the job's folder.
    """
    py = cfg["PYTHON"]
    hyd = jdir / "hydra"
    if kind == "preprocess":
        steps = _preprocess_steps(cfg, p["video"], jdir / "subject", hyd, int(p["resolution"]))
        return [*steps, {"name": "summary", "call": "summarize_subject"}]
    if kind == "train":
        argv = [py, "train.py", *train_overrides(cfg, p, jdir)]
        last = jdir / "run" / "checkpoints" / "last.ckpt"
        if last.exists():
            argv.append(f"ckpt_path={hydra_value(last)}")
        steps = [{"name": "copy subject", "call": "copy_subject"}, {"name": "train", "argv": argv}]
        ckpt = str(last)
        if p["family"] == "mesh":
            steps.append(
                {
                    "name": "export mesh",
                    "argv": [
                        py,
                        "-m",
                        "src.export",
                        f"ckpt_path={hydra_value(ckpt)}",
                        f"out_dir={hydra_value(jdir / 'export')}",
                        f"hydra.run.dir={hydra_value(jdir / 'export')}",
                        f"texture_size={int(p.get('texture_size', 1024))}",
                        *_extra(cfg, "export"),
                    ],
                }
            )
        orbit = {"mode": "orbit", "ckpt": ckpt, "n_frames": cfg.get("ORBIT_FRAMES", 48)}
        steps.append(
            {
                "name": "orbit video",
                "argv": [py, "reenact.py", *reenact_overrides(cfg, orbit, jdir / "orbit")],
            }
        )
        return [*steps, {"name": "results", "call": "collect_training"}]
    if kind == "reenact":
        return [{"name": "render", "argv": [py, "reenact.py", *reenact_overrides(cfg, p, jdir / "out")]}]
    if kind == "cross":
        steps = _preprocess_steps(cfg, p["video"], jdir / "source", hyd, int(p["resolution"]))
        q = {**p, "mode": "cross", "source": str(jdir / "source")}
        return [
            *steps,
            {"name": "render", "argv": [py, "reenact.py", *reenact_overrides(cfg, q, jdir / "out")]},
        ]
    raise ValueError(f"unknown job kind {kind!r}; one of preprocess, train, reenact, cross")
