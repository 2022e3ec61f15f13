"""Load a trained avatar from its checkpoint (with its subject, for scoring) and render or score a split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.core.outputs import Batch
from src.metrics.geometry import geometry_errors, scored_vertices
from src.models.scoring import write_frames


class CheckpointError(ValueError):
    """A checkpoint cannot be used for evaluation or reenactment; the message says why."""


def load_avatar(
    ckpt_path: str | Path,
    data_overrides: Mapping[str, Any] | None = None,
    map_location: str = "cpu",
    with_data: bool = True,
):
    """Rebuild the avatar (and, for scoring, its data module) from a checkpoint written by train.py.

    The checkpoint alone is enough to render the avatar (frame parameters, image size, splits); the data
    module is rebuilt from the stored data config only when ``with_data`` (ground-truth frames and geometry
    for scoring), and its :class:`SubjectData` is attached to the model.

    Args:
        ckpt_path: a .ckpt from ``<run>/checkpoints``.
        data_overrides: keys replacing entries of the saved data config (e.g. {"root": ...}).
        map_location: device for the weights.
        with_data: also rebuild the data module (prepared and set up).

    Returns:
        (model in eval mode, data module or None).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model_target", "data_config"):
        if key not in ckpt:
            raise CheckpointError(f"{path} has no '{key}'; it was not written by this project's train.py")
    cls = hydra.utils.get_class(ckpt["model_target"])
    model = cls.load_from_checkpoint(path, map_location=map_location)
    model.eval()
    model.checkpoint_file = path
    if not with_data:
        return model, None
    dm = hydra.utils.instantiate(dict(ckpt["data_config"], **(data_overrides or {})))
    dm.prepare_data()
    dm.setup("test")
    model.attach(dm.subject())
    return model, dm


def split_loader(dm, split: str, batch_size: int | None = None) -> Iterable[dict[str, torch.Tensor]]:
    """The data module's loader of ``split`` ("train", "val" or "test"), in frame order.

    Args:
        batch_size: frames per batch (default the data module's).
    """
    loaders = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}
    if split not in loaders:
        raise ValueError(f"unknown split '{split}'; use one of {sorted(loaders)}")
    loader = loaders[split]()
    size = int(batch_size or loader.batch_size)
    return DataLoader(loader.dataset, batch_size=size, shuffle=False, num_workers=loader.num_workers)


@torch.no_grad()
def render_split(
    model, dm, split: str, out_dir: str | Path, batch_size: int | None = None
) -> dict[str, Path | None]:
    """Write predicted frames, ground-truth frames and masks of a split as PNGs named by frame number.

    Runs the avatar's held-out preparation first, as scoring does (:func:`src.models.scoring.score_split`
    scores the same frames and writes the same PNGs).

    Returns:
        {"pred": folder, "gt": folder, "mask": folder or None}.
    """
    out = Path(out_dir)
    batches = split_loader(dm, split, batch_size)
    model.prepare_split(split, batches)
    has_mask = False
    for batch in tqdm(batches, desc=f"render {split}", unit="batch"):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        write_frames(out, batch, model.predict_frames(batch[Batch.INDEX]))
        has_mask = has_mask or Batch.MASK in batch
    return {"pred": out / "pred", "gt": out / "gt", "mask": out / "mask" if has_mask else None}


@torch.no_grad()
def geometry_scores(model, split: str, chunk: int = 8) -> dict[str, float] | None:
    """Mean and Hausdorff vertex distance (mm, face region) of a split against ground-truth vertices,
    from :meth:`AvatarMixin.posed_vertices` (the test loop scores the vertices of its forward pass, the same
    ones).

    Returns:
        the means over frames of :func:`src.metrics.geometry.geometry_errors`, or None when the attached
        subject has no ground-truth geometry or the model cannot give posed vertices.
    """
    subject = model.subject
    if subject is None or subject.gt_vertices is None:
        return None
    idx = subject.split_index(split).to(model.device)
    try:
        pred = torch.cat([model.posed_vertices(idx[s : s + chunk]) for s in range(0, len(idx), chunk)]).cpu()
    except NotImplementedError:
        return None
    gt = subject.gt_vertices[idx.cpu()]
    if gt.shape[1] != getattr(model.headmodel, "n_base_vertices", model.headmodel.template.shape[0]):
        return None  # the subject's ground truth belongs to another head model (e.g. ICT under FLAME)
    face = scored_vertices(model.headmodel).cpu()
    return {k: float(v.mean()) for k, v in geometry_errors(pred[:, face], gt[:, face]).items()}
