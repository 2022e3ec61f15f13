"""The installable package: a wheel with conf/ inside and console scripts that work from any folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.workflow_helpers import REPO


@pytest.mark.slow
def test_wheel_installs_and_entry_points_run_elsewhere(tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    src = tmp_path / "checkout"
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    wheels = tmp_path / "wheels"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(wheels),
        str(src),
    ]
    subprocess.run(build, check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("avatar-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = ("src/conf/train.yaml", "src/conf/experiment/nha_synthetic.yaml",
               "src/conf/hydra/launcher/slurm.yaml", "train.py", "evaluate.py", "reenact.py",
               "src/utils/confdir.py")  # fmt: skip
    for f in shipped:
        assert f in names, f
    assert not any(n.startswith("src/conf/local/") and not n.endswith("example.yaml") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(script: str, *args: str) -> str:
        cmd = [str(venv / "bin" / script), *args]
        proc = subprocess.run(cmd, cwd=elsewhere, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (script, proc.stderr[-3000:])
        return proc.stdout

    assert "experiment: " in run("avatar-train", "--help")
    job = run("avatar-train", "--cfg", "job", "experiment=nha_synthetic")
    assert "src.models.nha" in job
    searchpath = run("avatar-train", "--info", "searchpath")
    assert str(venv) in searchpath and str(REPO) not in searchpath
    for script in ("avatar-eval", "avatar-reenact", "avatar-export", "avatar-preprocess", "avatar-track"):
        assert "Powered by Hydra" in run(script, "--help"), script
