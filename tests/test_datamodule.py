"""AvatarDataModule: splits by frame range, item contents, batch size per device, cache reuse."""

from __future__ import annotations

import pytest
import torch

from src.core.layout import LayoutError
from src.datamodules.avatar_datamodule import AvatarDataModule, split_ranges


def test_split_ranges_hold_out_the_last_frames():
    s = split_ranges(20, val_frames=3, test_frames=5)
    assert s["train"] == list(range(12)) and s["val"] == [12, 13, 14] and s["test"] == [15, 16, 17, 18, 19]
    with pytest.raises(LayoutError, match="cannot hold"):
        split_ranges(5, 3, 3)


def test_datamodule_items(tiny_subject):
    dm = AvatarDataModule(str(tiny_subject), batch_size=4, val_frames=2, test_frames=3)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].max() <= 1
    assert batch["mask"].shape == (4, 1, 48, 48)
    assert batch["segmentation"].dtype == torch.long and batch["landmarks68"].shape == (4, 68, 2)
    assert batch["normals"].min() >= -1
    test_idx = torch.cat([b["index"] for b in dm.test_dataloader()])
    assert test_idx.tolist() == [9, 10, 11]
    params = dm.params()
    assert params["expression"].shape[0] == 12 and params["K"].shape == (3, 3)


def test_batch_size_divided_by_world_size(tiny_subject):
    class FakeTrainer:
        world_size = 2

    dm = AvatarDataModule(str(tiny_subject), batch_size=4, val_frames=2, test_frames=3)
    dm.trainer = FakeTrainer()
    dm.setup("fit")
    assert dm.batch_size_per_device == 2
    dm = AvatarDataModule(str(tiny_subject), batch_size=3, val_frames=2, test_frames=3)
    dm.trainer = FakeTrainer()
    with pytest.raises(ValueError, match="not divisible"):
        dm.setup("fit")


def test_missing_subject_is_a_clear_error(tmp_path):
    dm = AvatarDataModule(str(tmp_path / "nothing"))
    with pytest.raises(LayoutError, match="preprocess a video"):
        dm.prepare_data()


def test_epoch_steps_fix_the_epoch_length_in_batches(tiny_subject):
    """data.epoch_steps: an epoch is that many batches of whole shuffled passes, whatever the frame count."""
    dm = AvatarDataModule(str(tiny_subject), batch_size=2, val_frames=2, test_frames=3, epoch_steps=7)
    dm.setup("fit")  # 7 training frames
    seen = torch.cat([b["index"] for b in dm.train_dataloader()])
    assert len(dm.train_dataloader()) == 7 and len(seen) == 14
    assert sorted(seen[:7].tolist()) == list(range(7)) and sorted(seen[7:14].tolist()) == list(range(7))
    plain = AvatarDataModule(str(tiny_subject), batch_size=2, val_frames=2, test_frames=3)
    plain.setup("fit")
    assert len(plain.train_dataloader()) == 4  # one pass: ceil(7 / 2)
    with pytest.raises(ValueError, match="epoch_steps"):
        AvatarDataModule(str(tiny_subject), epoch_steps=0)


def test_data_hashes_refuse_a_subject_that_changed(tiny_subject):
    """A checkpoint's ``data_hashes`` pin the subject: the same layout passes, another one is refused."""
    from src.core.layout import DataMismatchError

    dm = AvatarDataModule(str(tiny_subject))
    saved = dm.config()["data_hashes"]
    assert saved["data"] == dm.layout.read_meta()["config_hash"]
    AvatarDataModule(str(tiny_subject), data_hashes=saved).prepare_data()
    with pytest.raises(DataMismatchError, match="tiny: .*retrain"):
        AvatarDataModule(str(tiny_subject), data_hashes={**saved, "data": "0" * 12}).prepare_data()
