"""bench/bench_gpu.py on the CPU at a tiny size: both families' rows, the table and the JSON."""

from __future__ import annotations

import json

import pytest

from bench import bench_gpu

pytestmark = pytest.mark.integration  # builds and steps both avatar families


def test_bench_gpu_script_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_on_cpu.json"
    args = ["--device", "cpu", "--sizes", "64", "--repeats", "1", "--warmup", "0", "--skip-tests"]
    assert bench_gpu.main([*args, "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["device"] == "cpu" and rec["gpu_tests"] is None
    for family in ("mesh", "image"):
        (row,) = rec[family]
        assert row["size"] == 64 and row["train_step_ms"] > 0
    assert rec["mesh"][0]["render_fps"] > 0 and rec["image"][0]["frame_fps"] > 0
    table = bench_gpu.table(rec)
    assert "| mesh avatar | 64 |" in table and "| image avatar | 64 |" in table


def test_cuda_request_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(bench_gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu"):
        bench_gpu.main(["--device", "cuda", "--skip-tests"])
