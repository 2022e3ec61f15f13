"""SelfieAvatar: a StyleGAN2-based image avatar trained adversarially with detail losses."""

from __future__ import annotations

import copy
import logging
from typing import Any

import hydra
import torch
import torch.nn.functional as F

from src.core.outputs import Batch, Out
from src.core.streams import pixel_weight
from src.core.subject import SubjectData
from src.losses import (
    FaceIdentityLoss,
    IDMRFLoss,
    WeightedLoss,
    d_logistic_loss,
    g_nonsaturating_loss,
    mask_mae,
    r1_penalty,
)
from src.models.base_module import AvatarModule
from src.models.selfie.avatar_net import SelfieGenerator, ema_beta, ema_update
from src.models.selfie.conditioning import HeadConditioner, split_conditioning
from src.models.selfie.discriminator import Discriminator
from src.render import Cameras

log = logging.getLogger(__name__)

TERMS = ("mask", "mrf", "l1", "cos", "adv")


class SelfieAvatar(AvatarModule):
    """Head-model render + UV image -> StyleGAN2-based generator -> avatar image and foreground mask.

    Training alternates a discriminator step (logistic loss, lazy R1 every ``r1.every`` steps) and a
    generator step (``loss.weights``: mask, mrf, l1, cos, adv; a weight of 0 leaves a term out and must be
    set by the experiment config). An exponential moving average of the generator is what validation,
    testing, ``predict_frames``/``render_params`` (evaluate.py, reenact.py) and checkpoints' inference use.

    Args:
        headmodel: head-model config; renderer: MeshRenderer config.
        hidden_regions: head-model regions left out of the conditioning render; None: the head model's
            ``hidden_regions``.
        generator: :class:`SelfieGenerator` kwargs; ``size`` must equal the data's (square) image side, or
            be None to take it from the subject (:meth:`attach`, or the checkpoint's image size).
        discriminator: :class:`Discriminator` kwargs except size and in_channels.
        loss: {"weights": {term: weight}, "mrf": IDMRFLoss kwargs, "face_id": FaceIdentityLoss kwargs}.
        metrics: ImageMetrics settings.
        optimizer_g, optimizer_d: partial optimisers.
        r1: {"gamma": R1 weight, "every": lazy interval in steps}.
        ema: {"half_life_images", "rampup"} of the generator average (see :func:`ema_beta`).
        d_condition: the discriminator also sees the conditioning images (render, uv, mask).
        adv_start_epoch: epochs of reconstruction-only training before the adversarial terms start.
        cache_conditioning: keep the conditioning images of tracked frames in memory (they are fixed).
        seed: seed of the generator's fixed latents.
    """

    def __init__(
        self,
        headmodel: Any,
        renderer: Any,
        hidden_regions: list[str] | None,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        loss: dict[str, Any],
        metrics: dict[str, Any],
        optimizer_g: Any,
        optimizer_d: Any,
        r1: dict[str, float] | None = None,
        ema: dict[str, Any] | None = None,
        d_condition: bool = True,
        adv_start_epoch: int = 0,
        cache_conditioning: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(metrics)
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        hm = hydra.utils.instantiate(headmodel)
        self.conditioner = HeadConditioner(hm, hydra.utils.instantiate(renderer), hidden_regions)
        self.weights = {k: float(v) for k, v in dict(loss["weights"]).items()}
        unknown = set(self.weights) - set(TERMS)
        if unknown:
            raise ValueError(f"loss.weights has unknown terms {sorted(unknown)}; known: {list(TERMS)}")
        self.generator: SelfieGenerator | None = None
        self.generator_ema: SelfieGenerator | None = None
        self.discriminator: Discriminator | None = None
        size = generator.get("size")
        if size is not None:
            self._build_generator(int(size))
        self.mrf = IDMRFLoss(**dict(loss.get("mrf") or {})) if self.weights.get("mrf", 0) > 0 else None
        self.face_id_loss = (
            FaceIdentityLoss(**dict(loss.get("face_id") or {})) if self.weights.get("cos", 0) > 0 else None
        )
        if size is not None:
            self._build_discriminator(int(size))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self._cond_cache: torch.Tensor | None = None
        self._cond_known: torch.Tensor | None = None

    def _build_generator(self, size: int) -> None:
        """The generator and its average for ``size`` x ``size`` images."""
        hp = self.hparams
        self.generator = SelfieGenerator(**{**dict(hp.generator), "size": size}, seed=hp.seed)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()

    def _build_discriminator(self, size: int) -> None:
        """The discriminator (when the adversarial term is on) for ``size`` x ``size`` images."""
        hp = self.hparams
        if self.weights.get("adv", 0) > 0:
            in_ch = 3 + (HeadConditioner.channels if hp.d_condition else 0)
            self.discriminator = Discriminator(size, in_channels=in_ch, **dict(hp.discriminator))

    # ---------------------------------------------------------------- set-up
    @property
    def headmodel(self) -> torch.nn.Module:
        """The head model that renders the conditioning images."""
        return self.conditioner.headmodel

    def attach(self, subject: SubjectData, data_config=None) -> None:
        """See :meth:`AvatarModule.attach`; ``generator.size: null`` takes the subject's image side."""
        super().attach(subject, data_config)
        self._check_size()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._check_size()

    def _check_size(self) -> None:
        h, w = self.image_size
        if h != w:
            raise ValueError(f"the image avatar needs square images; the data's are {h}x{w}")
        if self.generator is None:  # generator.size: null
            device = self.device
            self._build_generator(h)
            self._build_discriminator(h)
            self.to(device)
        size = self.generator.size
        if (h, w) != (size, size):
            raise ValueError(
                f"model.generator.size={size} but the data's images are {h}x{w}; "
                f"set model.generator.size={h} or null (square images only)"
            )

    def train(self, mode: bool = True):
        super().train(mode)
        if self.generator_ema is not None:
            self.generator_ema.eval()  # the average is only used for inference
        return self

    # ---------------------------------------------------------------- conditioning and generation
    def conditioning(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Conditioning images of tracked frames ``index`` (B,) at the generator size (cached)."""
        if not self.hparams.cache_conditioning:
            return self._conditioning_of(index)
        n = self.frames.n_frames
        s = self.generator.size
        if self._cond_cache is None or self._cond_cache.device != self.device or len(self._cond_cache) != n:
            self._cond_cache = torch.zeros(n, HeadConditioner.channels, s, s, device=self.device)
            self._cond_known = torch.zeros(n, dtype=torch.bool, device=self.device)
        todo = index[~self._cond_known[index]]
        if len(todo):
            self._cond_cache[todo] = self._conditioning_of(todo)[Out.CONDITION_STACK]
            self._cond_known[todo] = True
        return split_conditioning(self._cond_cache[index])

    def _conditioning_of(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.frames
        cams = f.cameras_for(index, self.image_size)
        pose = (f.rotation[index], f.translation[index])
        return self.conditioner(f.identity, f.expression[index], *pose, cams, f.joint_pose[index])

    def forward(self, index: torch.Tensor, soft_alpha: bool = False) -> dict[str, torch.Tensor]:
        """Images of tracked frames ``index`` (B,) from the averaged generator (inference).

        Args:
            index: (B,) frame numbers; soft_alpha: ignored (the image avatar has no silhouette).

        Returns:
            dict with Out.IMAGE (B,3,H,W), Out.MATTE (B,1,H,W) and the conditioning render Out.CONDITION
            (B,3,H,W).
        """
        cond = self.conditioning(index)
        out = self.generator_ema(cond, randomize_noise=False)
        return {Out.IMAGE: out[Out.IMAGE], Out.MATTE: out[Out.MATTE], Out.CONDITION: cond[Out.CONDITION]}

    @torch.no_grad()
    def render_params(self, identity, expression, rotation, translation, cameras: Cameras, joint_pose=None):
        """See :meth:`src.models.avatar.AvatarMixin.render_params`.

        Cameras of another image size are rendered at the generator size (intrinsics scaled) and the
        result is resampled to the cameras' size.
        """
        size = (self.generator.size, self.generator.size)
        target = tuple(cameras.image_size)
        cams = cameras.resized(size) if target != size else cameras
        cond = self.conditioner(identity, expression, rotation, translation, cams, joint_pose)
        out = self.generator_ema(cond, randomize_noise=False)
        image, mask = out[Out.IMAGE].clamp(0, 1), out[Out.MATTE]
        if target != size:
            image = F.interpolate(image, size=target, mode="bilinear", antialias=True, align_corners=False)
            mask = F.interpolate(mask, size=target, mode="bilinear", antialias=True, align_corners=False)
        return {Out.IMAGE: image, Out.MATTE: mask}

    def personalized_vertices(self, expression: torch.Tensor, joint_pose=None) -> torch.Tensor:
        """The tracked head model's canonical vertices (the image avatar does not refine geometry)."""
        hm = self.headmodel
        return hm.canonical(self.frames.identity.expand(expression.shape[0], -1), expression, joint_pose)

    def posed_vertices(self, index: torch.Tensor) -> torch.Tensor:
        """Not available: the image avatar has no geometry of its own to score (it draws images over the
        tracked head model), so evaluate.py leaves geometry out for it."""
        raise NotImplementedError("SelfieAvatar does not refine geometry")

    def texture_colors(self, points, face_idx, bary, expression):
        raise NotImplementedError(
            "the image avatar (SelfieAvatar) draws images, not a surface texture; mesh export needs a mesh "
            "avatar checkpoint (experiment=nha_synthetic)"
        )

    # ---------------------------------------------------------------- losses
    def _d_input(self, image: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([image, cond[Out.CONDITION_STACK]], dim=1) if self.hparams.d_condition else image

    def generator_loss(
        self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], cond, adversarial: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted generator loss and its terms (see the class docstring)."""
        real, fg = batch[Batch.IMAGE], batch[Batch.MASK]
        weights = dict(self.weights)
        if not adversarial:
            weights["adv"] = 0.0
        keep = pixel_weight(batch)  # padded crop pixels and occluders: the target's values, no error there
        image, matte = out[Out.IMAGE], out[Out.MATTE]
        if keep is not None:
            image, matte = image * keep + real * (1 - keep), matte * keep + fg * (1 - keep)

        def mrf() -> torch.Tensor:  # patches are matched across the image: blank the kept-out pixels in both
            k = 1.0 if keep is None else keep
            return self.mrf(matte * image * k, fg * real * k)

        def cos() -> torch.Tensor:
            return self.face_id_loss(image, real, fg, batch.get(Batch.LANDMARKS68))

        def adv() -> torch.Tensor:
            return g_nonsaturating_loss(self.discriminator(self._d_input(out[Out.IMAGE], cond)))

        terms = {
            "mask": lambda: mask_mae(matte, fg),
            "mrf": mrf,
            "l1": lambda: (image - real).abs().mean(),
            "cos": cos,
            "adv": adv,
        }
        return WeightedLoss(weights)(terms)

    # ---------------------------------------------------------------- training
    def _adversarial(self) -> bool:
        return self.discriminator is not None and self.current_epoch >= int(self.hparams.adv_start_epoch)

    def optimisation_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        """A discriminator step (when adversarial), a generator step and the generator average update.

        Returns:
            the generator loss (detached) and its terms, which ``training_step`` logs.
        """
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, (list, tuple)) else (opts, None)
        cond = self.conditioning(batch[Batch.INDEX])
        real = batch[Batch.IMAGE]
        bs = real.shape[0]
        adversarial = self._adversarial()
        if adversarial:
            self._discriminator_step(opt_d, real, cond, bs)
            self.discriminator.requires_grad_(False)
        out = self.generator(cond, randomize_noise=True)
        total, parts = self.generator_loss(batch, out, cond, adversarial)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt_g.step()
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
        self.g_steps += 1
        ema_cfg = dict(self.hparams.ema or {})
        beta = ema_beta(
            bs, int(self.g_steps), float(ema_cfg.get("half_life_images", 500.0)), ema_cfg.get("rampup")
        )
        ema_update(self.generator_ema, self.generator, beta)
        return total.detach(), parts

    def _discriminator_step(self, opt_d, real: torch.Tensor, cond, bs: int) -> None:
        with torch.no_grad():
            fake = self.generator(cond, randomize_noise=True)[Out.IMAGE]
        d_loss = d_logistic_loss(self.discriminator(self._d_input(real, cond)),
                                 self.discriminator(self._d_input(fake, cond)))  # fmt: skip
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.log("train/d_loss", d_loss, prog_bar=True, batch_size=bs)
        r1 = dict(self.hparams.r1 or {})
        every, gamma = int(r1.get("every", 16)), float(r1.get("gamma", 1.0))
        if gamma > 0 and int(self.g_steps) % every == 0:
            real_in = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.discriminator(self._d_input(real_in, cond)), real_in)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(0.5 * gamma * every * penalty)
            opt_d.step()
            self.log("train/r1", penalty, batch_size=bs)

    def configure_optimizers(self):
        opt_g = hydra.utils.instantiate(self.hparams.optimizer_g)(params=self.generator.parameters())
        if self.discriminator is None:
            return opt_g
        opt_d = hydra.utils.instantiate(self.hparams.optimizer_d)(params=self.discriminator.parameters())
        return [opt_g, opt_d]
