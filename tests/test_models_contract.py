"""The data handed to models (SubjectData), the declared batch/output names, the held-out fit, scoring."""

from __future__ import annotations

import pytest
import torch

from src.core.layout import PARAM_KEYS
from src.core.outputs import Batch, Out
from src.core.subject import SubjectData, SubjectDataError
from src.datamodules.avatar_datamodule import AvatarDataModule
from src.metrics.geometry import geometry_errors
from src.models.nha.heldout import HeldoutFit, concat_batches
from src.models.scoring import GeometryMetric


def _params(n: int = 5) -> dict[str, torch.Tensor]:
    return {
        "identity": torch.zeros(4), "expression": torch.zeros(n, 3), "rotation": torch.zeros(n, 3),
        "translation": torch.zeros(n, 3), "joint_pose": torch.zeros(n, 0), "K": torch.eye(3),
        "R": torch.eye(3), "t": torch.zeros(3),
    }  # fmt: skip


def test_subject_data_checks_its_fields():
    splits = {"train": [0, 1, 2], "val": [3], "test": [4]}
    s = SubjectData(_params(), (48, 64), splits, gt_vertices=torch.zeros(5, 7, 3), fps=25.0)
    assert s.n_frames == 5 and s.image_size == (48, 64) and s.splits["test"] == (4,)
    assert s.split_index("train").tolist() == [0, 1, 2]
    with pytest.raises(SubjectDataError, match="lacks"):
        SubjectData({k: v for k, v in _params().items() if k != "K"}, (48, 64), splits)
    with pytest.raises(SubjectDataError, match="outside the 5 frames"):
        SubjectData(_params(), (48, 64), {**splits, "test": [5]})
    with pytest.raises(SubjectDataError, match="gt_vertices"):
        SubjectData(_params(), (48, 64), splits, gt_vertices=torch.zeros(4, 7, 3))
    with pytest.raises(SubjectDataError, match="splits must have"):
        SubjectData(_params(), (48, 64), {"train": [0]})


def test_data_module_describes_its_subject_with_declared_batch_keys(tiny_subject):
    dm = AvatarDataModule(str(tiny_subject), val_frames=2, test_frames=2, params_source="ground_truth")
    subject = dm.subject()
    assert set(subject.params) == set(PARAM_KEYS) and subject.n_frames == 12
    assert subject.image_size == (48, 48) and subject.splits["test"] == (10, 11)
    assert subject.gt_vertices is not None and subject.gt_vertices.shape[:1] == (12,)
    batch = next(iter(dm.test_dataloader()))
    assert set(batch) <= Batch.all()  # every key the data gives is declared
    assert Batch.MASK in batch and Out.MATTE not in Batch.all()


def test_heldout_fit_optimises_only_its_tensors():
    """The fit moves the given start values towards the loss minimum; a network inside the loss keeps its
    parameters, their requires_grad and their (absent) gradients."""
    net = torch.nn.Linear(3, 3)
    before = [p.detach().clone() for p in net.parameters()]
    target = torch.tensor([[0.5, 0.2, 0.1]])

    def loss_of(expr, rot, trans, rows):
        total = ((expr - 0.25) ** 2).sum() + ((net(rot) - target) ** 2).sum() + (trans**2).sum()
        return total, {}

    fit = HeldoutFit(steps=50, lr=0.05, batch_size=2, translation_lr_scale=1.0)  # rates: test_nha_heldout.py
    expr0, rot0, trans0 = torch.zeros(3, 2), torch.zeros(3, 3), torch.ones(3, 3)
    expr, rot, trans = fit.run(loss_of, expr0, rot0, trans0)
    assert (expr - 0.25).abs().max() < 0.05 and trans.abs().max() < 0.5
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert expr0.abs().max() == 0  # the start values are not modified in place


def test_concat_batches_keeps_frame_order():
    batches = [{Batch.INDEX: torch.tensor([3, 4]), Batch.IMAGE: torch.zeros(2, 3, 2, 2)},
               {Batch.INDEX: torch.tensor([5]), Batch.IMAGE: torch.ones(1, 3, 2, 2)}]  # fmt: skip
    out = concat_batches(batches)
    assert out[Batch.INDEX].tolist() == [3, 4, 5] and out[Batch.IMAGE].shape[0] == 3
    with pytest.raises(ValueError, match="empty"):
        concat_batches([])


def test_geometry_metric_is_the_mean_over_frames_whatever_the_batches():
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.randn(5, 30, 3, generator=g), torch.randn(5, 30, 3, generator=g)
    metric = GeometryMetric()
    metric.update(pred[:2], gt[:2])
    metric.update(pred[2:], gt[2:])
    got = metric.compute()
    for k, v in geometry_errors(pred, gt).items():
        torch.testing.assert_close(got[k].float(), v.mean(), rtol=1e-5, atol=1e-5)
