"""Load a trained avatar from its checkpoint and render frames of its subject."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from tqdm import tqdm

from src.metrics.geometry import geometry_errors, scored_vertices
from src.utils.io import to_uint8, write_png


class CheckpointError(ValueError):
    """A checkpoint cannot be used for evaluation or reenactment; the message says why."""


def load_avatar(ckpt_path: str | Path, data_overrides: dict | None = None, map_location: str = "cpu"):
    """Rebuild the avatar and its data module from a checkpoint written by train.py.

    Args:
        ckpt_path: a .ckpt from ``<run>/checkpoints``.
        data_overrides: keys replacing entries of the saved data config (e.g. {"root": ...}).
        map_location: device for the weights.

    Returns:
        (model in eval mode, data module after setup("test")).
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
    data_cfg = dict(ckpt["data_config"], **(data_overrides or {}))
    dm = hydra.utils.instantiate(data_cfg)
    dm.prepare_data()
    dm.setup("test")
    return model, dm


def render_split(model, dm, split: str, out_dir: str | Path, batch_size: int = 4) -> dict[str, Path]:
    """Write predicted frames, ground-truth frames and masks of a split as PNGs named by frame number.

    Returns:
        {"pred": folder, "gt": folder, "mask": folder or None}.
    """
    out = Path(out_dir)
    ds = dm.datasets[split]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    has_mask = bool(dm.meta["available"].get("masks"))
    device = next(iter(model.parameters())).device
    model.prepare_split(dm, split)
    for batch in tqdm(loader, desc=f"render {split}", unit="batch"):
        pred = model.predict_frames(batch["index"].to(device)).cpu()
        for j, i in enumerate(batch["index"].tolist()):
            name = f"{i:06d}.png"
            write_png(out / "pred" / name, to_uint8(pred[j].permute(1, 2, 0)))
            write_png(out / "gt" / name, to_uint8(batch["image"][j].permute(1, 2, 0)))
            if has_mask:
                write_png(out / "mask" / name, to_uint8(batch["mask"][j, 0]))
    return {"pred": out / "pred", "gt": out / "gt", "mask": out / "mask" if has_mask else None}


@torch.no_grad()
def geometry_scores(model, dm, split: str) -> dict[str, float] | None:
    """Mean and Hausdorff vertex distance (mm, face region) of a split against ground-truth vertices.

    Returns:
        the means of :func:`src.metrics.geometry.geometry_errors`, or None when the subject has no
        ground-truth geometry or the model cannot give posed vertices.
    """
    path = dm.root / "ground_truth" / "vertices.npy"
    if not path.exists():
        return None
    idx = torch.tensor(dm.splits[split])
    try:
        pred = torch.cat([model.posed_vertices(idx[s : s + 8]) for s in range(0, len(idx), 8)]).cpu()
    except NotImplementedError:
        return None
    gt = torch.from_numpy(np.load(path)[idx.numpy()]).float()
    if gt.shape[1] != getattr(model.headmodel, "n_base_vertices", model.headmodel.template.shape[0]):
        return None  # the subject's ground truth belongs to another head model (e.g. ICT under FLAME)
    face = scored_vertices(model.headmodel).cpu()
    return {k: float(v.mean()) for k, v in geometry_errors(pred[:, face], gt[:, face]).items()}
