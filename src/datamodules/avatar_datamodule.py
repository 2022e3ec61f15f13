"""LightningDataModule over one subject layout, with train/val/test splits by frame range."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, RandomSampler

from src.core.layout import DataMismatchError, LayoutError, SubjectLayout
from src.core.streams import read_background, read_background_motion
from src.core.subject import SubjectData
from src.datamodules.dataset import SubjectFrames
from src.datamodules.synthetic.generate import config_hash, generate_subject
from src.utils.config import to_plain

log = logging.getLogger(__name__)


def split_ranges(n_frames: int, val_frames: int, test_frames: int) -> dict[str, list[int]]:
    """Frame indices per split: train first, then val, then the last ``test_frames`` held out.

    Raises:
        LayoutError: if the splits leave no training frames.
    """
    n_train = n_frames - val_frames - test_frames
    if n_train < 1 or val_frames < 0 or test_frames < 0:
        raise LayoutError(
            f"{n_frames} frames cannot hold {val_frames} val + {test_frames} test frames and still train; "
            "lower data.val_frames/data.test_frames or use a longer sequence"
        )
    return {
        "train": list(range(n_train)),
        "val": list(range(n_train, n_train + val_frames)),
        "test": list(range(n_train + val_frames, n_frames)),
    }


class AvatarDataModule(pl.LightningDataModule):
    """Frames, masks, segmentation, normals and landmarks of one subject.

    Args:
        root: subject folder (the layout of src/core/layout.py).
        batch_size: global batch size; each process gets batch_size // world_size.
        num_workers: DataLoader workers.
        val_frames: frames right before the test range used for validation.
        test_frames: last frames of the sequence, held out.
        generator: synthetic-subject settings; when given, prepare_data renders the subject into
            ``root`` unless a complete render with the same settings is already there.
        headmodel: head-model config used by the generator (instantiated only when generating).
        params_source: "ground_truth", "tracking" or "auto" (tracking if present, else ground truth).
        epoch_steps: batches in one training epoch, drawn as consecutive shuffled passes over the training
            frames (the last pass cut short), so an epoch is the same work on a short and a long clip;
            None: one pass over the frames.
        data_hashes: ``{"data": ..., "tracking": ...}``, the hashes of the data a checkpoint was trained on
            (:meth:`config` records them); when given, ``prepare_data`` refuses with
            :class:`DataMismatchError` to build data that would come out different, instead of rebuilding it
            silently. None: build whatever the settings give.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 4,
        num_workers: int = 0,
        val_frames: int = 4,
        test_frames: int = 16,
        generator: dict[str, Any] | None = None,
        headmodel: dict[str, Any] | None = None,
        params_source: str = "auto",
        pin_memory: bool = False,
        epoch_steps: int | None = None,
        data_hashes: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.layout = SubjectLayout(self.root)
        self.batch_size = batch_size
        self.batch_size_per_device = batch_size
        self.num_workers = num_workers
        self.val_frames = val_frames
        self.test_frames = test_frames
        self.generator = to_plain(generator)
        self.headmodel_cfg = to_plain(headmodel)
        self.params_source = params_source
        self.pin_memory = pin_memory
        if epoch_steps is not None and int(epoch_steps) < 1:
            raise ValueError(f"data.epoch_steps={epoch_steps}; give a positive number of batches or null")
        self.epoch_steps = None if epoch_steps is None else int(epoch_steps)
        self.data_hashes = to_plain(data_hashes)
        self.meta: dict[str, Any] | None = None
        self.splits: dict[str, list[int]] = {}
        self.datasets: dict[str, SubjectFrames] = {}

    def prepare_data(self) -> None:
        """Render the synthetic subject once (cached by a hash of its settings)."""
        if self.generator is None:
            if not self.layout.exists():
                raise LayoutError(f"{self.root} holds no processed subject; preprocess a video into it first")
            self.check_hash("data", self.layout.read_meta().get("config_hash"), self.root.name)
            return
        digest = config_hash(self.generator)
        self.check_hash("data", digest, "the synthetic subject")
        if self.layout.exists() and self.layout.read_meta().get("config_hash") == digest:
            return
        if self.headmodel_cfg is None:
            raise LayoutError("data.generator is set but data.headmodel is not; set headmodel=ict")
        log.info("rendering the synthetic subject into %s", self.root)
        headmodel = hydra.utils.instantiate(self.headmodel_cfg)
        generate_subject(self.root, headmodel, config=self.generator, **self.generator)

    def check_hash(self, kind: str, digest: str | None, name: str) -> None:
        """Refuse to go on when ``data_hashes[kind]`` is set and differs from ``digest``.

        Args:
            kind: "data" (preprocessing or generation) or "tracking".
            digest: the hash the data would have now.
            name: what the data is, for the message (a video's file name, never a server path).

        Raises:
            DataMismatchError: the data would differ from the data the checkpoint was trained on.
        """
        want = (self.data_hashes or {}).get(kind)
        if want is None or want == digest:
            return
        what = {"data": "preprocessing", "tracking": "tracking"}.get(kind, kind)
        raise DataMismatchError(
            f"{name}: the avatar was trained on data from other {what} settings, another code version or "
            f"another video file (hash {want}, now {digest}); it would be scored on different frames, so it "
            "is refused: pass the settings it was trained with, or retrain it"
        )

    def current_hashes(self) -> dict[str, str | None]:
        """The hashes of the data in ``root`` now: ``{"data": ..., "tracking": ...}`` (None where absent)."""
        meta = self.layout.read_meta() if self.layout.exists() else {}
        return {"data": meta.get("config_hash"), "tracking": (meta.get("tracking") or {}).get("config_hash")}

    def setup(self, stage: str | None = None) -> None:
        """Validate the layout, build the splits and the per-device batch size."""
        if self.trainer is not None:
            world = self.trainer.world_size
            if self.batch_size % world:
                raise ValueError(
                    f"data.batch_size={self.batch_size} is not divisible by the {world} processes; "
                    "choose a multiple of trainer.devices * num_nodes"
                )
            self.batch_size_per_device = self.batch_size // world
        if self.meta is None:
            self.meta = self.layout.validate()
            self.splits = split_ranges(self.meta["n_frames"], self.val_frames, self.test_frames)
            self.datasets = {k: SubjectFrames(self.layout, v, self.meta) for k, v in self.splits.items()}

    def config(self) -> dict[str, Any]:
        """A plain config that rebuilds this data module via ``hydra.utils.instantiate`` (for checkpoints)."""
        return {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "_recursive_": False,
            "root": str(self.root),
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "val_frames": self.val_frames,
            "test_frames": self.test_frames,
            "generator": self.generator,
            "headmodel": self.headmodel_cfg,
            "params_source": self.params_source,
            "data_hashes": self.current_hashes(),
        }

    @property
    def image_size(self) -> tuple[int, int]:
        """(H,W) of the frames."""
        meta = self.meta or self.layout.read_meta()
        return meta["height"], meta["width"]

    def params(self, source: str | None = None) -> dict[str, torch.Tensor]:
        """Per-frame head-model parameters (see SubjectLayout.read_params) as tensors."""
        source = self.layout.resolve_source(source or self.params_source)
        return {k: torch.from_numpy(np.asarray(v)) for k, v in self.layout.read_params(source).items()}

    def subject(self) -> SubjectData:
        """What a model is told about this subject (parameters, image size, splits, ground truth).

        Call after :meth:`prepare_data`; sets the data module up (``setup``) when it is not yet.
        """
        if self.meta is None:
            self.setup()
        gt = self.layout.read_gt_vertices()
        return SubjectData(
            params=self.params(),
            image_size=self.image_size,
            splits=self.splits,
            gt_vertices=torch.from_numpy(gt) if gt is not None else None,
            fps=self.meta.get("fps"),
            background=read_background(self.layout, meta=self.meta),
            background_motion=read_background_motion(self.layout, self.meta),
            root=self.root,
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[split]
        if len(ds) == 0:
            raise LayoutError(f"the {split} split is empty; set data.{split}_frames > 0")
        sampler = None
        if shuffle and self.epoch_steps is not None:
            # without replacement, num_samples beyond len(ds) concatenates fresh permutations; under DDP
            # Lightning splits these samples across the processes (epoch_steps batches each)
            sampler = RandomSampler(ds, replacement=False, num_samples=self.epoch_steps * self.batch_size)
        return DataLoader(
            ds,
            batch_size=self.batch_size_per_device,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
