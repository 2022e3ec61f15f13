"""FID schedule on validation (ImageMetrics.pause) and the test-split image grid."""

from __future__ import annotations

from types import SimpleNamespace

from src.callbacks.dashboard import FIDSchedule
from src.metrics.suite import ImageMetrics


def test_fid_schedule_pauses_val_fid():
    metrics = ImageMetrics(lpips=False, fid=False, masked=False)
    module = SimpleNamespace(val_scores=SimpleNamespace(images=metrics))
    cb = FIDSchedule(val_every_n_epochs=3)
    due = []
    for epoch in range(7):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, max_epochs=7)
        cb.on_validation_epoch_start(trainer, module)
        due.append("fid" not in metrics.paused)
    assert due == [False, False, True, False, False, True, True]  # every 3rd epoch and the last
    cb.on_validation_epoch_start(SimpleNamespace(sanity_checking=True, current_epoch=2, max_epochs=7), module)
    assert "fid" in metrics.paused
    assert FIDSchedule(0)._due(SimpleNamespace(sanity_checking=False, current_epoch=4, max_epochs=5)) is False
