"""Shared fixtures. Importing ``src`` first makes torchvision/torchmetrics/Lightning importable here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from tests.helpers import TINY_GENERATOR, synthetic_config


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def ict_model():
    """The ICT-FaceKit head model (loaded once per test session)."""
    from src.headmodel.ict import ICTHeadModel

    return ICTHeadModel()


@pytest.fixture(scope="session")
def tiny_subject(tmp_path_factory, ict_model) -> Path:
    """A 12-frame, 48 px synthetic subject rendered once per test session."""
    from src.datamodules.synthetic.generate import generate_subject

    root = tmp_path_factory.mktemp("data") / "synthetic" / "tiny"
    cfg = synthetic_config(**TINY_GENERATOR)  # the data module's hash: training runs use it as it is
    generate_subject(root, ict_model, config=cfg, **cfg)
    return root
