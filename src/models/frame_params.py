"""Per-frame head-model parameters stored on a LightningModule as checkpointed buffers."""

from __future__ import annotations

import torch
from torch import nn

from src.core.layout import PARAM_KEYS
from src.render import Cameras


class FrameParams(nn.Module):
    """Holds identity (Ni,), expression (N,Ne), rotation (N,3), translation (N,3), joint_pose (N,Nj),
    and the camera K (3,3), R (3,3), t (3,) as buffers that travel with checkpoints.

    Shapes are only known once the data is set up, so :meth:`load` (re)registers them, and
    :meth:`prepare_for_state_dict` creates them from a checkpoint before it is loaded.
    """

    def __init__(self) -> None:
        super().__init__()
        for k in PARAM_KEYS:
            self.register_buffer(k, torch.zeros(0))

    @property
    def n_frames(self) -> int:
        return int(self.expression.shape[0])

    def load(self, params: dict[str, torch.Tensor]) -> None:
        """Register the given arrays (float32) as buffers on this module's device."""
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise KeyError(f"frame parameters lack {missing}")
        device = self.expression.device
        for k in PARAM_KEYS:
            self.register_buffer(k, torch.as_tensor(params[k], dtype=torch.float32, device=device).clone())

    def prepare_for_state_dict(self, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
        """Take the frame parameters stored under ``prefix`` in a checkpoint's state dict before it loads, so
        that :meth:`AvatarModule.on_frames_ready` sees the tracking (not just its shapes)."""
        found = {k: state_dict[prefix + k] for k in PARAM_KEYS if prefix + k in state_dict}
        if len(found) == len(PARAM_KEYS):
            self.load(found)

    def cameras_for(self, index: torch.Tensor, image_size: tuple[int, int]):
        """Cameras of the frames ``index`` (B,) at ``image_size`` (H,W)."""
        b = index.shape[0]
        return Cameras(self.K.expand(b, 3, 3), self.R.expand(b, 3, 3), self.t.expand(b, 3), image_size)
