r"""Dropout whose CPU mask costs a third of
:func:`torch.nn.functional.dropout`'s.

On CPU, torch draws one number from its Mersenne Twister per element for
:func:`torch.nn.functional.dropout` (``bernoulli_``). Here one 64-bit draw
yields the mask of two elements: each element keeps its value when a uniform
32-bit integer is at least :math:`\mathrm{round}(p \, 2^{32})`, so the drop
probability is :math:`p` to within :math:`2^{-33}`. Other devices use :func:`torch.nn.functional.dropout` (fused there).
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    r""":math:`\mathbf{x} \odot \mathbf{m} / (1 - p)` with
    :math:`m \sim \mathrm{Bernoulli}(1 - p)` per element in training, as
    :func:`torch.nn.functional.dropout`; ``x`` itself otherwise."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1 or x.device.type != 'cpu':
        return F.dropout(x, p, True)
    num = x.numel()
    bits = torch.empty((num + 1) // 2, dtype=torch.int64, device=x.device)
    # ``from=-2**63, to=None``: the full 64-bit range, 32 random bits per
    # int32 half.
    uniform = bits.random_(-2**63, None).view(torch.int32)[:num]
    keep = uniform.view(x.shape) >= round(p * 2**32) - 2**31
    return x * keep.to(x.dtype).mul_(1 / (1 - p))


class Dropout(torch.nn.Dropout):
    r""":class:`torch.nn.Dropout` through :func:`dropout` (out of place
    only)."""
    def __init__(self, p: float = 0.5, inplace: bool = False):
        if inplace:
            raise ValueError("pyg_mmssl.nn.dropout.Dropout has no in-place "
                             "mode")
        super().__init__(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
