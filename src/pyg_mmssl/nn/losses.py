r"""Loss functions shared by the models."""
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
    between = z1 @ z2.t() / tau
    within = z1 @ z1.t() / tau
    eye = torch.eye(z1.size(0), dtype=torch.bool, device=z1.device)
    within = within.masked_fill(eye, float('-inf'))
    logits = torch.cat([between, within], dim=1)
    return (torch.logsumexp(logits, dim=1) - between.diagonal()).mean()
