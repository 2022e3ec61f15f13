"""The held-out fit's parts: stored beside its checkpoint (and refused when stale), a batch scaled down for a
coarse fit, early stopping."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import torch

from src.core.outputs import Batch
from src.models.nha.heldout import HeldoutFit, StoredFit, fit_size, scaled_batch


def test_stored_fit_round_trip_and_invalidation(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights v1")
    store = StoredFit(ckpt)
    idx = torch.tensor([5, 6, 7])
    key = store.key(idx, HeldoutFit(steps=3).settings())
    params = {"expression": torch.rand(3, 4), "rotation": torch.rand(3, 3), "translation": torch.rand(3, 3)}
    assert store.load("test", key) is None
    store.save("test", key, params)
    assert (tmp_path / "last.heldout_test.pt").is_file()
    got = StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx, HeldoutFit(steps=3).settings()))
    torch.testing.assert_close(got["expression"], params["expression"])
    # other settings, other frames, or a rewritten checkpoint: not reused
    assert StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx, HeldoutFit(steps=4).settings())) is None
    assert StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx[:2], HeldoutFit(steps=3).settings())) is None
    # a re-tracked subject (another start) is fitted again; the same start is reused
    start = {"expression": torch.zeros(3, 4), "rotation": torch.zeros(3, 3)}
    key_s = store.key(idx, HeldoutFit(steps=3).settings(), start)
    store.save("test", key_s, params)
    assert StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx, HeldoutFit(steps=3).settings(), start))
    moved = {**start, "rotation": start["rotation"] + 1e-3}
    assert (
        StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx, HeldoutFit(steps=3).settings(), moved)) is None
    )
    ckpt.write_bytes(b"weights v2")
    assert StoredFit(ckpt).load("test", StoredFit(ckpt).key(idx, HeldoutFit(steps=3).settings())) is None
    (tmp_path / "last.heldout_test.pt").write_bytes(b"damaged")
    assert StoredFit(ckpt).load("test", key) is None  # unreadable: fitted again, not an error
    assert StoredFit(None).path("test") is None


def test_scaled_batch_against_a_loop():
    b, h, w = 2, 8, 12
    batch = {
        Batch.IMAGE: torch.rand(b, 3, h, w), Batch.MASK: torch.rand(b, 1, h, w),
        Batch.SEGMENTATION: torch.randint(0, 5, (b, h, w)), Batch.LANDMARKS68: torch.rand(b, 68, 2) * 8,
        Batch.INDEX: torch.tensor([3, 4]),
    }  # fmt: skip
    assert fit_size((8, 12), 6) == (4, 6) and fit_size((8, 12), 64) == (8, 12)
    small = scaled_batch(batch, (4, 6))
    for y in range(4):
        for x in range(6):  # area average of each 2x2 block
            block = batch[Batch.IMAGE][:, :, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].mean((-1, -2))
            torch.testing.assert_close(small[Batch.IMAGE][:, :, y, x], block)
    assert small[Batch.SEGMENTATION].dtype == torch.int64 and small[Batch.SEGMENTATION].shape == (b, 4, 6)
    assert set(small[Batch.SEGMENTATION].unique().tolist()) <= set(
        batch[Batch.SEGMENTATION].unique().tolist()
    )
    torch.testing.assert_close(small[Batch.LANDMARKS68], batch[Batch.LANDMARKS68] * 0.5)
    assert torch.equal(small[Batch.INDEX], batch[Batch.INDEX])


def test_early_stop_ends_the_fit():
    calls = []

    def loss_of(expr, rot, trans, rows):
        calls.append(1)
        return (expr - 0.5).pow(2).sum() + rot.pow(2).sum() + trans.pow(2).sum(), {}

    start = (torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4, 3))
    HeldoutFit(steps=200, lr=0.1, batch_size=4).run(loss_of, *start)
    full = len(calls)
    calls.clear()
    expr, _, _ = HeldoutFit(steps=200, lr=0.1, batch_size=4, tol=0.05).run(loss_of, *start)
    assert full == 200 and 2 < len(calls) < 200
    assert (expr - 0.5).abs().max() < 0.25  # stopped once progress slowed, not before it started


def test_pose_steps_are_scaled_and_the_rates_decay():
    """Adam moves a parameter with a constant-sign gradient by its learning rate per step. Over N steps of
    the cosine decay (rates lr (1 + cos(pi k / N)) / 2, k = 0..N-1) that is lr (N + 1) / 2, not the lr N of
    a constant rate; rotation and translation learn at ``lr`` times their scales."""

    def loss_of(expr, rot, trans, rows):  # constant pulls: expression up, pose down
        return -expr.sum() + rot.sum() + trans.sum(), {}

    lr, scale, steps, n = 0.01, 0.1, 40, 6  # one batch: a step per pass
    start = (torch.full((n, 4), 0.2), torch.zeros(n, 3), torch.zeros(n, 3))
    fit = HeldoutFit(steps=steps, lr=lr, batch_size=n, rotation_lr_scale=0.3, translation_lr_scale=scale)
    expr, rot, trans = fit.run(loss_of, *start)
    torch.testing.assert_close(expr, torch.full_like(expr, 0.2 + lr * (steps + 1) / 2), atol=1e-4, rtol=0)
    for p, k in ((rot, 0.3), (trans, scale)):
        torch.testing.assert_close(p, torch.full_like(p, -lr * k * (steps + 1) / 2), atol=1e-5, rtol=0)
