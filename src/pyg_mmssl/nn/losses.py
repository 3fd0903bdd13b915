r"""Loss functions shared by the models, and the Gumbel noise of MMSSL's
real distributions."""
import math

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    r"""Bayesian personalised ranking,
    :math:`-\frac{1}{B}\sum \ln \sigma(\mathbf{e}_u^\top \mathbf{e}_p -
    \mathbf{e}_u^\top \mathbf{e}_n)`, in its numerically stable softplus
    form."""
    diff = (user * pos).sum(-1) - (user * neg).sum(-1)
    return F.softplus(-diff).mean()


def l2_reg(*tensors: Tensor) -> Tensor:
    r""":math:`\frac{1}{B} \sum_t \|t\|^2` over batch tensors (``B`` rows)."""
    return sum(t.pow(2).sum() for t in tensors) / tensors[0].size(0)


def info_nce(z1: Tensor, z2: Tensor, tau: float = 0.5) -> Tensor:
    r"""InfoNCE between two views of the same ``B`` nodes, cosine similarity
    :math:`s`, temperature :math:`\tau`, in-batch negatives from both views:

    .. math::
        \mathcal{L} = -\frac{1}{B} \sum_i \log
        \frac{e^{s(z^1_i, z^2_i)/\tau}}
        {\sum_{j} e^{s(z^1_i, z^2_j)/\tau} +
         \sum_{j \neq i} e^{s(z^1_i, z^1_j)/\tau}}
    """
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    num = z1.size(0)
    # Both denominators' terms in one [B, 2B] product, the 1 / tau folded
    # into the [B, d] factor; the excluded s(z^1_i, z^1_i) set to -inf in
    # place (the product's backward does not read its output).
    logits = (z1 / tau) @ torch.cat([z2, z1]).t()
    logits[:, num:].diagonal().fill_(float('-inf'))
    positive = (z1 * z2).sum(-1) / tau
    return (torch.logsumexp(logits, dim=1) - positive).mean()


# Range of the Gumbel noise -log(-log(u)) for u clamped to
# [1e-10, 1 - 1e-7], as :func:`gumbel_noise` draws it.
GUMBEL_MIN = -math.log(-math.log(1e-10))
GUMBEL_MAX = -math.log(-math.log1p(-1e-7))


def gumbel_softmax_is_sparse(tau: float, eps: float,
                             dtype: torch.dtype = torch.float32) -> bool:
    r"""Whether :math:`\mathrm{softmax}((\mathbf{r}_u + \epsilon \mathbf{g})
    / \tau)` of a binary row with at least one one is exactly zero, in
    ``dtype``, outside the row's ones: true when the logit gap
    :math:`(1 - \epsilon (g_{max} - g_{min})) / \tau` exceeds
    :math:`-\ln` of the smallest positive ``dtype`` number (so
    :math:`e^{-\text{gap}}` underflows to zero)."""
    info = torch.finfo(dtype)
    smallest = info.tiny * info.eps  # smallest subnormal
    gap = (1 - eps * (GUMBEL_MAX - GUMBEL_MIN)) / tau
    return gap > -math.log(smallest) + 1


def gumbel_noise(shape, device=None, dtype=None) -> Tensor:
    r"""Standard Gumbel noise :math:`-\ln(-\ln u)`, :math:`u` uniform and
    clamped to :math:`[10^{-10}, 1 - 10^{-7}]`."""
    u = torch.rand(shape, device=device, dtype=dtype)
    return -torch.log(-torch.log(u.clamp_(1e-10, 1 - 1e-7)))
