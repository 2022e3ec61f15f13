"""In-process steps of jobs (small file work between entry points); each takes (job params, job folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from src.app.media import contact_sheet
from src.utils.io import write_json

# preprocessing's exclusion causes (meta.json "excluded") in words
CAUSES = {
    "no_face": "no face found",
    "multiple_faces": "more than one person",
    "too_small": "face too small",
    "no_landmarks": "landmarks failed",
}


def summarize_subject(p: dict[str, Any], jdir: Path) -> dict[str, Any]:
    """Contact sheet and ``summary.json`` (usable and excluded frames, with reasons) of a subject."""
    subject = jdir / "subject"
    meta = json.loads((subject / "meta.json").read_text())
    excluded = {CAUSES.get(k, k): v for k, v in (meta.get("excluded") or {}).items() if v}
    tracking = meta.get("tracking") or {}
    summary = {
        "n_frames": meta.get("n_frames"),
        "n_decoded": meta.get("n_decoded"),
        "fps": meta.get("fps"),
        "excluded": excluded,
        "n_excluded": sum(len(v) for v in excluded.values()),
        "landmarks68_source": meta.get("landmarks68_source"),
        "absent": meta.get("absent") or {},
        "tracking_errors": tracking.get("landmark_errors"),
        "resolution": p.get("resolution"),
    }
    contact_sheet(subject / "frames", jdir / "contact_sheet.png")
    write_json(jdir / "summary.json", summary)
    return summary


def copy_subject(p: dict[str, Any], jdir: Path) -> dict[str, Any]:
    """Copy the upload's preprocessed subject into the training job (so training never rewrites it)."""
    dst = jdir / "subject"
    if not (dst / "meta.json").exists():
        tmp = jdir / ".subject.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(p["subject_src"], tmp, symlinks=False, ignore=shutil.ignore_patterns("work"))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    return {}


def collect_training(p: dict[str, Any], jdir: Path) -> dict[str, Any]:
    """``results.json``: held-out metrics and the files a finished training job offers for download."""
    run = jdir / "run"
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    files = {
        "checkpoint": "run/checkpoints/last.ckpt",
        "orbit": "orbit/orbit.mp4",
        "video": "run/videos/val.mp4",
        "glb": next((f"export/{f.name}" for f in sorted((jdir / "export").glob("*.glb"))), None),
    }
    files = {k: v for k, v in files.items() if v and (jdir / v).is_file()}
    test = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("test/")}
    results = {"test_metrics": test, "metrics": metrics, "files": files}
    write_json(jdir / "results.json", results)
    return results


CALLS = {f.__name__: f for f in (summarize_subject, copy_subject, collect_training)}
