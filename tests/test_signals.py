"""Stop signals: the flag and check_stop, and real processes (training, tracking) stopped with SIGTERM that
exit within seconds and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from src.utils import signals
from tests.workflow_helpers import REPO, offline_env, tiny_overrides

pytestmark = pytest.mark.integration  # signals to training and tracking processes

MARK = ["+callbacks.kill._target_=tests.kill_callback.KillAt", "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=1", "+callbacks.kill.signum=mark"]  # fmt: skip


def test_flag_and_check_stop():
    signals.install()
    try:
        signals.check_stop("nothing yet")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert signals.stop_requested() == signal.SIGTERM
        with pytest.raises(signals.StopRequestedError, match="SIGTERM received during the loop"):
            signals.check_stop("the loop")
    finally:
        signals.reset()
    assert signals.stop_requested() is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class _Proc:
    """A subprocess whose combined output is collected by a thread (tqdm bars use carriage returns)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.text = ""
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, bufsize=0)  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # os.read returns what the pipe holds now; a buffered read(n) would wait for n characters, and a
        # marker could sit unseen in a half-filled chunk until the run had moved on
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 4096):
            self.text += chunk.decode(errors="replace")

    def wait_for(self, marker: str, timeout: float) -> None:
        end = time.time() + timeout
        while marker not in self.text:
            if self.proc.poll() is not None or time.time() > end:
                self.proc.kill()
                raise AssertionError(f"never saw {marker!r}:\n{self.text[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 120) -> float:
        """SIGTERM, then the seconds until the process exited."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self.thread.join(5)
        return time.time() - t0


def test_sigterm_stops_training_and_resumes(tiny_subject, tmp_path):
    run_dir = tmp_path / "run"
    extra = ["trainer.max_epochs=3", "logger=csv", "metrics.lpips=false", "metrics.fid=false",
             f"hydra.run.dir={run_dir}"]  # fmt: skip
    args = tiny_overrides(tiny_subject, tmp_path, extra)
    env = offline_env(tmp_path)
    p = _Proc([sys.executable, "train.py", *args, *MARK], env)
    p.wait_for("KillAt: mark at epoch 1", 600)
    took = p.stop()
    print(f"training stopped {took:.1f} s after SIGTERM")
    assert p.proc.returncode != 0 and took < 20, (took, p.text[-3000:])
    assert "stopped: SIGTERM received during training" in (run_dir / "train.log").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert not (run_dir / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, "train.py", *args, "ckpt_path=last"], cwd=str(REPO), env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "metrics.json").exists()
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr


def test_sigterm_stops_tracking_and_resumes(tiny_subject, tmp_path):
    root = tmp_path / "subject"
    shutil.copytree(tiny_subject, root)
    (root / "tracking.npz").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "src.tracking", f"root={root}", "tracking.focal.mode=fixed",
           "tracking.steps_rigid=20", "tracking.steps=4000", f"hydra.run.dir={tmp_path / 'h'}"]  # fmt: skip
    env = offline_env(tmp_path)
    p = _Proc(cmd, env)
    p.wait_for("tracking: full fit", 600)
    took = p.stop()
    print(f"tracking stopped {took:.1f} s after SIGTERM")
    assert p.proc.returncode != 0 and took < 20, (took, p.text[-3000:])
    assert "SIGTERM received during tracking (full fit)" in p.text
    again = _Proc(cmd, env)
    again.wait_for("resuming tracking after stage 'rigid'", 600)
    again.stop()


def test_wrapper_turns_lightnings_sigterm_exit_into_a_failure():
    """Lightning's SIGTERMException is SystemExit with code None (exit status 0): the wrapper re-raises a stop
    as StopRequestedError instead, so schedulers see a failed job; other exits pass through."""
    from src.utils.task import task_wrapper

    @task_wrapper
    def stopped_by_lightning(cfg):
        signals.request_stop(signal.SIGTERM)
        raise SystemExit

    with pytest.raises(signals.StopRequestedError, match="SIGTERM received during training"):
        stopped_by_lightning(None)
    assert signals.stop_requested() is None  # the wrapper clears the flag

    @task_wrapper
    def exits(cfg):
        raise SystemExit(3)

    with pytest.raises(SystemExit) as err:
        exits(None)
    assert err.value.code == 3
