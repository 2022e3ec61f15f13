"""Named training stages: which parameter groups train, their learning rates and the loss weights.

Stage lengths are optimiser steps (batches), not epochs, so a schedule costs the same on a 70-frame and a
600-frame clip; :func:`total_steps` gives ``trainer.max_steps`` (the config's ``${stage_steps:...}`` resolver,
:func:`src.utils.confdir.stage_steps`, sums them the same way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stage:
    """One stage of the schedule.

    Attributes:
        name: stage name (logged as ``train/stage``).
        steps: number of optimiser steps (batches).
        lr: parameter group -> learning rate; groups not listed are frozen in this stage.
        loss: term -> weight overrides on top of the base loss weights.
        resolution: render and score the stage's steps at this image side (the batch is scaled down;
            None: the training size), e.g. a coarse shape stage that only fits silhouettes.
        supersample: the stage's supersampling factor (None: the model's).
    """

    name: str
    steps: int
    lr: dict[str, float]
    loss: dict[str, float] = field(default_factory=dict)
    resolution: int | None = None
    supersample: int | None = None


def parse_stages(
    cfg: Mapping[str, Any], groups: set[str], terms: set[str], frozen: Sequence[str] = ()
) -> list[Stage]:
    """Build the stage list in config order, checking group and term names.

    A stage with 0 steps is checked but left out, so a base config can declare a stage (in its place in
    the order) that experiments switch on by giving it steps.

    Args:
        cfg: stage name -> {steps, lr, loss, resolution, supersample}, in schedule order.
        groups: the model's parameter group names.
        terms: the loss term names.
        frozen: groups no stage trains, whatever the stages' learning rates say (e.g. a subject's exact
            ground-truth parameters); their learning rates are dropped from every stage.

    Raises:
        ValueError: an unknown group or loss term (a typo in the config), or an empty schedule.
    """
    bad = set(frozen) - groups
    if bad:
        raise ValueError(
            f"model.frozen names unknown parameter groups {sorted(bad)}; known: {sorted(groups)}"
        )
    stages = []
    for name, s in cfg.items():
        lr = dict(s.get("lr", {}))
        bad = set(lr) - groups
        if bad:
            raise ValueError(
                f"stage '{name}' trains unknown parameter groups {sorted(bad)}; known: {sorted(groups)}"
            )
        loss = dict(s.get("loss", {}) or {})
        bad = set(loss) - terms
        if bad:
            raise ValueError(
                f"stage '{name}' weights unknown loss terms {sorted(bad)}; known: {sorted(terms)}"
            )
        if "steps" not in s:
            raise ValueError(f"stage '{name}' gives no steps; stage lengths are optimiser steps (steps: N)")
        steps = int(s["steps"])
        if steps < 0:
            raise ValueError(f"stage '{name}' has {steps} steps; give 0 (skip it) or more")
        res, ss = s.get("resolution"), s.get("supersample")
        for key, v in (("resolution", res), ("supersample", ss)):
            if v is not None and int(v) < 1:
                raise ValueError(f"stage '{name}' has {key}={v}; give a positive integer or null")
        if steps > 0:
            lr = {g: v for g, v in lr.items() if g not in frozen}
            stages.append(Stage(name=name, steps=steps, lr=lr, loss=loss,
                                resolution=None if res is None else int(res),
                                supersample=None if ss is None else int(ss)))  # fmt: skip
    if not stages:
        raise ValueError("model.stages has no stage with steps > 0; give at least one")
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that covers optimiser step ``step`` (0-based; the last stage continues past the schedule)."""
    start = 0
    for s in stages:
        if step < start + s.steps:
            return s
        start += s.steps
    return stages[-1]


def total_steps(stages: list[Stage]) -> int:
    """Sum of the stages' steps."""
    return sum(s.steps for s in stages)


def apply_stage(optimizer: Any, stage: Stage) -> None:
    """Give each named parameter group of ``optimizer`` its learning rate in ``stage``.

    Groups the stage gives no learning rate get lr 0 and their parameters stop requiring gradients (so no
    time is spent on them); the others require gradients again.
    """
    opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer  # Lightning's wrapper
    for group in opt.param_groups:
        lr = stage.lr.get(group["name"], 0.0)
        group["lr"] = lr
        for p in group["params"]:
            p.requires_grad_(lr > 0)
