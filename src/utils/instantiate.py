"""Build callbacks and loggers from config; keep wandb offline when no API key is configured."""

from __future__ import annotations

import logging
import netrc
import os

import hydra
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from src.utils.wandb_run import store_id, wandb_overrides

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


def instantiate_loggers(cfg: DictConfig | None, output_dir: str | None = None) -> list:
    """Instantiate the ``logger`` group; wandb goes offline (one log line) without credentials.

    With ``output_dir``, a wandb logger gets its automatic group, name and resumed run id (see
    :mod:`src.utils.wandb_run`) and its run id is stored beside the checkpoints.
    """
    if not cfg:
        return []
    loggers = []
    for lg in cfg.values():
        if not isinstance(lg, DictConfig) or "_target_" not in lg:
            continue
        if "wandb" not in lg._target_.lower():
            loggers.append(hydra.utils.instantiate(lg))
            continue
        kwargs = wandb_overrides(lg, output_dir) if output_dir else {}
        if os.environ.get("WANDB_MODE") != "online" and not wandb_has_credentials():
            log.info("wandb: no API key configured, logging offline (upload later with `wandb sync`)")
            os.environ["WANDB_MODE"] = "offline"
            kwargs["offline"] = True
        logger = hydra.utils.instantiate(lg, **kwargs)
        if output_dir and getattr(rank_zero_only, "rank", 0) == 0:
            store_id(output_dir, logger.experiment.id)
        loggers.append(logger)
    return loggers
