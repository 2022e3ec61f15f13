"""docs/results.md and the README's results table are what the benchmark records give."""

from __future__ import annotations

import json

import pytest

from bench import results_doc


def test_committed_results_documents_are_current():
    assert results_doc.main(["--check"]) == 0, "run: python -m bench.results_doc"


def test_record_job_copies_the_held_out_scores(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    scores = {"psnr": 30.5, "ssim": 0.9, "lpips": 0.05, "n_frames": 16, "geometry_face_mm": 1.5}
    (run / "eval" / "metrics.json").write_text(json.dumps(scores))
    path = results_doc.record_job("main", run, results=tmp_path)
    rec = json.loads(path.read_text())
    assert rec["command"] == "make main" and rec["date"]
    assert rec["scores"] == {"psnr": 30.5, "ssim": 0.9, "lpips": 0.05}
    assert rec["geometry"] == {"geometry_face_mm": 1.5}
    with pytest.raises(SystemExit, match="make yardstick"):
        results_doc.record_job("yardstick", tmp_path / "missing", results=tmp_path)


def test_readme_block_is_replaced_between_the_markers():
    text = f"before\n{results_doc.BEGIN}\nold table\n{results_doc.END}\nafter\n"
    out = results_doc.render_readme(text)
    assert out.startswith("before\n") and out.endswith("after\n") and "old table" not in out
    with pytest.raises(SystemExit, match="results markers"):
        results_doc.render_readme("no markers")
