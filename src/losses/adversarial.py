"""Non-saturating logistic GAN losses (L_g, L_d) and the R1 gradient penalty.

With D's raw logits l (no sigmoid) and softplus(x) = log(1 + e^x):

* generator:      L_g = E[softplus(-l(fake))]               = -E[log sigmoid(l(fake))]
* discriminator:  L_d = E[softplus(-l(real))] + E[softplus(l(fake))]
* R1:             R1  = E_real[ ||grad_x sum l(x)||^2 ]     (penalises D's slope on real data)

Lazy R1 (StyleGAN2): evaluate the penalty only every k-th discriminator step and scale it by k to keep
the same expected strength, i.e. add ``(gamma / 2) * k * r1_penalty(...)`` on those steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss.

    Args:
        fake_logits: (N,...) discriminator logits of generated samples.

    Returns:
        () mean of softplus(-fake_logits).
    """
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss.

    Args:
        real_logits: (N,...) logits of real samples.
        fake_logits: (M,...) logits of generated samples (detach the generator's output first).

    Returns:
        () softplus(-real).mean() + softplus(fake).mean().
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """R1 penalty: mean over the batch of the squared norm of d(sum of logits)/d(input).

    Because samples are independent in D, the gradient of the summed logits w.r.t. the batch holds each
    sample's own gradient. The graph is kept (``create_graph=True``) so the penalty can be
    back-propagated into D's parameters.

    Args:
        real_logits: (N,...) logits computed from ``real_inputs``.
        real_inputs: (N,...) the real batch, with ``requires_grad=True`` set before D was applied.

    Returns:
        () scalar.

    Raises:
        ValueError: ``real_inputs`` does not require grad.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty needs real_inputs.requires_grad_(True) before the discriminator call")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
