"""The installable package: a wheel with conf/ inside and console scripts that work from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from src.utils.assets import asset_roots
from tests.helpers import TINY_GENERATOR
from tests.workflow_helpers import REPO


def test_web_app_loads_no_model_code(tmp_path):
    """The studio (web server and queue) runs the model code as processes: importing and building it loads
    neither torch nor Lightning."""
    code = (
        "import sys\n"
        "from src.app import create_app\n"
        f"create_app({{'DATA_DIR': {str(tmp_path / 'app')!r}}})\n"
        "heavy = ('torch', 'torchvision', 'torchmetrics', 'pytorch_lightning', 'lightning')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_wheel_installs_and_entry_points_run_elsewhere(tmp_path, tiny_subject):
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
               "src/conf/hydra/launcher/slurm.yaml", "src/cli/train.py", "src/cli/evaluate.py",
               "src/cli/reenact.py", "src/utils/confdir.py")  # fmt: skip
    for f in shipped:
        assert f in names, f
    top_level = [n for n in names if "/" not in n]
    assert not top_level, f"modules outside the package: {top_level}"
    assert not any(n.startswith("src/conf/local/") and not n.endswith("example.yaml") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # an installed package has no checkout beside it: the user points AVATAR_ASSETS at the assets
    env = {
        **os.environ,
        "AVATAR_ASSETS": str(next(r for r in asset_roots() if r.is_dir())),
        "WANDB_MODE": "offline",
    }

    def run(script: str, *args: str) -> str:
        cmd = [str(venv / "bin" / script), *args]
        proc = subprocess.run(cmd, cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, (script, proc.stderr[-3000:])
        return proc.stdout

    assert "experiment: " in run("avatar-train", "--help")
    job = run("avatar-train", "--cfg", "job", "experiment=nha_synthetic")
    assert "src.models.nha" in job
    searchpath = run("avatar-train", "--info", "searchpath")
    assert str(venv) in searchpath and str(REPO) not in searchpath
    for script in ("avatar-eval", "avatar-reenact", "avatar-export", "avatar-preprocess", "avatar-track"):
        assert "Powered by Hydra" in run(script, "--help"), script

    # a user's chain from that folder on the tiny subject: a debug batch, one epoch, a preset, a mesh
    data_dir = elsewhere / "data"
    shutil.copytree(tiny_subject, data_dir / "synthetic" / "seed0_48px_12f")
    tiny = [f"paths.data_dir={data_dir}", *(f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()),
            "data.val_frames=2", "data.test_frames=2", "data.batch_size=4", "experiment=baseline_synthetic",
            "logger=csv", "metrics.fid=false", "callbacks.rich_progress_bar=null"]  # fmt: skip
    run("avatar-train", *tiny, "debug=fdr", f"hydra.run.dir={elsewhere / 'fdr'}")
    run_dir = elsewhere / "run"
    run("avatar-train", *tiny, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={run_dir}")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    smile, mesh = elsewhere / "smile", elsewhere / "mesh"
    run("avatar-reenact", f"ckpt_path={ckpt}", "mode=preset", "preset=smile", f"out_dir={smile}",
        "progress=false", f"hydra.run.dir={smile}")  # fmt: skip
    assert list(smile.glob("*.mp4"))
    run("avatar-export", f"ckpt_path={ckpt}", f"out_dir={mesh}", f"hydra.run.dir={mesh}")
    assert list(mesh.glob("*.glb")) and list(mesh.glob("*.obj"))
