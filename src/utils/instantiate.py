"""Build callbacks and loggers from config; keep wandb offline when no API key is configured."""

from __future__ import annotations

import logging
import netrc
import os

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    """True if an API key is set in the environment or in ~/.netrc for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    """Instantiate every entry of the ``callbacks`` group that has a ``_target_``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list:
    """Instantiate the ``logger`` group; wandb goes offline (one log line) without credentials."""
    if not cfg:
        return []
    loggers = []
    for lg in cfg.values():
        if not isinstance(lg, DictConfig) or "_target_" not in lg:
            continue
        if (
            "wandb" in lg._target_.lower()
            and os.environ.get("WANDB_MODE") != "online"
            and not wandb_has_credentials()
        ):
            log.info("wandb: no API key configured, logging offline (upload later with `wandb sync`)")
            os.environ["WANDB_MODE"] = "offline"
            loggers.append(hydra.utils.instantiate(lg, offline=True))
            continue
        loggers.append(hydra.utils.instantiate(lg))
    return loggers
