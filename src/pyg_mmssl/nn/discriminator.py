r"""MMSSL's critic, and the factorised form of its inputs that makes it cheap.

The critic reads item-wide rows :math:`\mathbf{x} \in \mathbb{R}^I`. MMSSL's
rows are a low-rank product plus a sparse part (generated rows are
:math:`\mathbf{p}_u \mathbf{P}_i^\top` with the training items zeroed;
the Gumbel-softmax of an observed row is non-zero only on its training
items), so the critic's only :math:`I`-wide product, its first layer, can be
computed without forming them (:class:`CriticRows`).
"""
import math
from contextlib import contextmanager
from itertools import accumulate
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_mmssl.nn.dropout import Dropout
from pyg_mmssl.nn.spmm import sorted_csr, transposed_csr

CRITICS = ('dense', 'exact', 'lowrank')


class CriticRows(NamedTuple):
    r"""``B`` critic input rows in factorised form,

    .. math::
        \mathbf{X} = \mathbf{L} \mathbf{R}^\top + \mathbf{S} \; (+
        \mathbf{D}),

    a rank-:math:`d` product (:obj:`left` ``[B, d]``, :obj:`right`
    ``[I, d]``), a sparse part :math:`\mathbf{S}` given by distinct
    ``(row, col)`` positions with :obj:`value`, and an optional dense part
    :math:`\mathbf{D}` ``[B, I]``. Every operation is differentiable."""
    left: Tensor
    right: Tensor
    row: Tensor
    col: Tensor
    value: Tensor
    dense: Optional[Tensor] = None

    @property
    def num_rows(self) -> int:
        return self.left.size(0)

    def scale(self, factor: Tensor) -> 'CriticRows':
        r"""Rows multiplied by ``factor`` ``[B]``."""
        dense = None if self.dense is None else self.dense * factor.view(-1, 1)
        value = self.value * factor.index_select(0, self.row)
        return self._replace(left=self.left * factor.view(-1, 1), value=value,
                             dense=dense)

    def sq_norm(self) -> Tensor:
        r""":math:`\|\mathbf{x}_b\|^2` of every row, through the Gram matrix
        :math:`\mathbf{R}^\top \mathbf{R}` and :func:`sampled_products`."""
        left, right, row, col, value = self[:5]
        out = ((left @ (right.t() @ right)) * left).sum(-1)
        at = sampled_products(left, right, row, col)  # L R^T at S's entries
        cross = value * (value + 2 * at)
        if self.dense is not None:
            d = self.dense
            out = out + d.pow(2).sum(-1) + 2 * (left * (d @ right)).sum(-1)
            cross = cross + 2 * value * d[row, col]
        return out.index_add(0, row, cross)

    def normalize(self, eps: float = 1e-12) -> 'CriticRows':
        r"""Rows divided by :math:`\max(\|\mathbf{x}_b\|, \epsilon)`, as
        :func:`torch.nn.functional.normalize`."""
        norm = self.sq_norm().clamp_min(eps * eps).sqrt()
        return self.scale(1 / norm)

    def matmul_t(self, weight: Tensor) -> Tensor:
        r""":math:`\mathbf{X} \mathbf{W}^\top` for ``weight``
        :math:`\mathbf{W}` ``[w, I]`` (:func:`rows_matmul_t`)."""
        return rows_matmul_t([self], weight)

    def to_dense(self) -> Tensor:
        r"""The rows as a dense ``[B, I]`` tensor (for tests)."""
        out = self.left @ self.right.t()
        if self.dense is not None:
            out = out + self.dense
        return out.index_put((self.row, self.col), self.value,
                             accumulate=True)

    def detach(self) -> 'CriticRows':
        return CriticRows(*(None if t is None else t.detach() for t in self))


Rows = Union[Tensor, CriticRows, Sequence[CriticRows]]


class SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, row, col, value, other, num_rows):
        ctx.save_for_backward(row, col, value, other)
        ctx.num_rows = num_rows
        return sorted_csr(row, col, value, num_rows, other.size(0)) @ other

    @staticmethod
    def backward(ctx, grad_out):
        row, col, value, other = ctx.saved_tensors
        grad_value = grad_other = None
        if ctx.needs_input_grad[2]:  # <grad_out[row], other[col]>
            grad_value = _sampled_products(grad_out, other, row, col)
        if ctx.needs_input_grad[3]:  # S^T grad_out
            grad_other = transposed_csr(row, col, value, ctx.num_rows,
                                        other.size(0)) @ grad_out
        return None, None, grad_value, grad_other, None


def _sampled_products(a: Tensor, b: Tensor, row: Tensor,
                      col: Tensor) -> Tensor:
    r""":math:`\langle \mathbf{a}_{r}, \mathbf{b}_{c} \rangle` for every
    ``(r, c)`` in ``(row, col)`` (row-sorted): the entries of :math:`\mathbf{A}
    \mathbf{B}^\top` there, by one sampled dense-dense product
    (:func:`torch.sparse.sampled_addmm`) on their CSR pattern, which reads
    only the rows it needs. (On this project's CPU, 20k positions of width
    1,677 in 391 rows: 9 ms, against 144 ms through the dense product and 67
    ms by gathering rows; width 64: 0.4 against 1.5 ms.)"""
    if row.numel() == 0:
        return a.new_zeros(0)
    pattern = sorted_csr(row, col, a.new_zeros(row.numel()), a.size(0),
                         b.size(0))
    # B^T as a view of contiguous B: the layout the CPU kernel reads fastest.
    return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0).values()


class SampledProducts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, left, right, row, col):
        ctx.save_for_backward(left, right, row, col)
        return _sampled_products(left, right, row, col)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        left, right, row, col = ctx.saved_tensors
        grad_left = grad_right = None
        size = (left.size(0), right.size(0))
        if ctx.needs_input_grad[0]:  # S right, S = grad_out at (row, col)
            grad_left = sorted_csr(row, col, grad_out, *size) @ right
        if ctx.needs_input_grad[1]:  # S^T left
            grad_right = transposed_csr(row, col, grad_out, *size) @ left
        return grad_left, grad_right, None, None


def sampled_products(left: Tensor, right: Tensor, row: Tensor,
                     col: Tensor) -> Tensor:
    r""":math:`(\mathbf{L} \mathbf{R}^\top)_{rc}` at distinct, row-sorted
    ``(row, col)``, differentiable in ``left`` and ``right`` (first order;
    the backward is two CSR products)."""
    return SampledProducts.apply(left, right, row, col)


def sparse_matmul(row: Tensor, col: Tensor, value: Tensor, other: Tensor,
                  num_rows: int) -> Tensor:
    r""":math:`\mathbf{S} \mathbf{O}` for the sparse ``[num_rows, N]``
    matrix :math:`\mathbf{S}` with entries ``value`` at distinct, row-sorted
    ``(row, col)`` and a dense ``other`` :math:`\mathbf{O}` ``[N, w]``,
    differentiable in ``value`` and ``other`` (contiguous ``[N, w]``).
    Forward and the gradient of :math:`\mathbf{O}` are CSR products; the
    gradient of ``value`` is :math:`\partial\mathbf{Y}\,\mathbf{O}^\top`
    at the positions (:func:`_sampled_products`)."""
    # Contiguous rows of ``other``: what both CSR products read.
    return SparseMatmul.apply(row, col, value, other.contiguous(), num_rows)


def rows_matmul_t(rows: Sequence[CriticRows], weight: Tensor) -> Tensor:
    r"""The row sets :math:`\mathbf{X}_j = \mathbf{L}_j \mathbf{R}_j^\top +
    \mathbf{S}_j (+ \mathbf{D}_j)` stacked, times :math:`\mathbf{W}^\top`
    for ``weight`` :math:`\mathbf{W}` ``[w, I]``: :math:`\mathbf{L}_j
    \mathbf{P}_j^\top` with :math:`[\mathbf{P}_1 \cdots \mathbf{P}_m] =
    \mathbf{W} [\mathbf{R}_1 \cdots \mathbf{R}_m]` (one product), plus one
    sparse-dense product of all the sparse parts stacked
    (:func:`sparse_matmul`), plus one product of the dense parts stacked
    (only the sets that have one). One product of each kind means one
    ``[w, I]`` gradient of each kind for :math:`\mathbf{W}`, not one per row
    set."""
    proj = weight @ torch.cat([r.right for r in rows], dim=1)
    proj = proj.split([r.right.size(1) for r in rows], dim=1)
    out = torch.cat([r.left @ p.t() for r, p in zip(rows, proj)])
    offsets = list(accumulate([r.num_rows for r in rows], initial=0))
    out = out + sparse_matmul(
        torch.cat([r.row + offset for r, offset in zip(rows, offsets)]),
        torch.cat([r.col for r in rows]), torch.cat([r.value for r in rows]),
        weight.t(), out.size(0))
    dense = [(offset, r.dense) for r, offset in zip(rows, offsets)
             if r.dense is not None]
    if not dense:
        return out
    # The dense parts stacked, one product, added to their sets' rows.
    index = torch.cat([
        torch.arange(offset, offset + d.size(0), device=out.device)
        for offset, d in dense
    ])
    return out.index_add(0, index,
                         torch.cat([d for _, d in dense]) @ weight.t())


def masked_score_rows(left: Tensor, right: Tensor, row: Tensor,
                      col: Tensor) -> CriticRows:
    r""":math:`\mathbf{L} \mathbf{R}^\top` with the ``(row, col)`` entries
    set to zero, in factorised form."""
    return CriticRows(left, right, row, col,
                      -sampled_products(left, right, row, col))


class InputGradSqNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta, weight):
        (num_rows, w), num_items = delta.shape, weight.size(1)
        # Gram: 2 w^2 I + 2 R w^2 multiply-adds with the backward; per row:
        # 3 R w I.
        ctx.gram = 2 * w * (num_items + num_rows) < 3 * num_rows * num_items
        if ctx.gram:
            out = delta @ (weight @ weight.t())  # delta W W^T
            sq = (out * delta).sum(-1)
        else:
            out = delta @ weight  # delta W
            sq = torch.linalg.vector_norm(out, dim=-1).square()
        ctx.save_for_backward(delta, weight, out)
        return sq

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sq):
        delta, weight, out = ctx.saved_tensors
        grad_delta = grad_weight = None
        scale = 2 * grad_sq.unsqueeze(-1)
        if ctx.gram:
            if ctx.needs_input_grad[0]:
                grad_delta = scale * out
            if ctx.needs_input_grad[1]:  # 2 G W, G = delta^T diag(g) delta
                gram = delta.t() @ (scale * delta)
                # As (W^T G)^T: the layout of ``weight``, a view of W^T.
                grad_weight = (weight.t() @ gram).t()
        else:
            out = scale * out
            if ctx.needs_input_grad[0]:
                grad_delta = out @ weight.t()
            if ctx.needs_input_grad[1]:
                grad_weight = (out.t() @ delta).t()
        return grad_delta, grad_weight


def input_grad_sq_norm(delta: Tensor, weight: Tensor) -> Tensor:
    r""":math:`\|\boldsymbol{\delta}_b \mathbf{W}\|^2` per row: the squared
    norm of a critic's input gradient, given ``delta``
    :math:`\boldsymbol{\delta}` ``[R, w]``, the gradient with respect to its
    first layer's output, and that layer's ``weight`` ``[w, I]``;
    differentiable (first order). Through the Gram matrix
    :math:`\mathbf{W}\mathbf{W}^\top` when that costs fewer operations,
    forward and backward (:math:`2 w^2 I + 2 R w^2` against :math:`3 R w
    I`), else by the per-row products :math:`\boldsymbol{\delta}
    \mathbf{W}`."""
    return InputGradSqNorm.apply(delta, weight)


class InputLayer(torch.nn.Module):
    r"""The critic's :math:`I`-wide first layer :math:`\mathbf{x}
    \mapsto \mathbf{x} \mathbf{W}_1^\top`, without bias (batch norm
    follows; a bias would get zero gradient), initialised as
    :class:`torch.nn.Linear`. The parameter is :math:`\mathbf{W}_1^\top`
    ``[in, out]`` (:obj:`weight_t`): the sparse products read its rows, and
    its gradients and optimiser state then all share that layout, so a step
    makes no ``[in, out]`` copies. :obj:`weight` is the ``[out, in]`` view.
    Loads checkpoints that hold ``weight`` ``[out, in]``."""
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight_t = torch.nn.Parameter(
            torch.empty(in_channels, out_channels))
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        return self.weight_t.t()

    @torch.no_grad()
    def reset_parameters(self):
        # Drawn in torch.nn.Linear's order: the same values for a seed.
        weight = torch.empty(self.out_channels, self.in_channels,
                             device=self.weight_t.device,
                             dtype=self.weight_t.dtype)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_t.copy_(weight.t())

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight_t

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + 'weight' in state_dict:  # torch.nn.Linear's layout
            state_dict[prefix + 'weight_t'] = \
                state_dict.pop(prefix + 'weight').t()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


class Discriminator(torch.nn.Module):
    r"""MMSSL's critic over users' preference distributions across all
    :math:`I` items, an MLP :math:`I \to I/4 \to I/8 \to 1` with batch
    norm, LeakyReLU and dropout, trained as a Wasserstein critic with gradient
    penalty (WGAN-GP, `"Improved Training of Wasserstein GANs"
    <https://arxiv.org/abs/1704.00028>`_):

    .. math::
        \mathcal{L}_D = -\mathbb{E}[D(\mathbf{r})] + \mathbb{E}[D(\mathbf{s})]
        + \lambda_{gp} \, \mathbb{E}\big[(\|\nabla_{\hat{\mathbf{x}}}
        D(\hat{\mathbf{x}})\|_2 - 1)^2\big], \quad
        \hat{\mathbf{x}} = \alpha \mathbf{r} + (1 - \alpha) \mathbf{s}

    Args:
        num_items (int): Input width :math:`I`.
        critic (str): ``"dense"``: the method as stated, on dense ``[B, I]``
            rows (the reference). ``"exact"``: the same critic and the same
            maths on :class:`CriticRows`: the first layer
            :math:`\mathbf{W}_1` is applied to the low-rank and sparse parts
            separately, each row once; interpolates are
            :math:`\hat{\mathbf{x}}\mathbf{W}_1^\top = \alpha
            \mathbf{r}\mathbf{W}_1^\top + (1 - \alpha)
            \mathbf{s}\mathbf{W}_1^\top`; the penalty's input gradient is
            :math:`\boldsymbol{\delta}\mathbf{W}_1` with
            :math:`\boldsymbol{\delta} = \partial D / \partial
            (\hat{\mathbf{x}}\mathbf{W}_1^\top)`, its norm taken through
            :func:`input_grad_sq_norm`. ``"lowrank"`` (a different, cheaper
            model): the MLP :math:`I \to r \to r/2 \to 1` with
            :math:`r` = :obj:`rank`, on :class:`CriticRows` like
            ``"exact"``. Its first layer is a rank-:math:`r` projection of the
            rows, and no layer is quadratic in :math:`I` (with widths
            :math:`I/4 \to I/8` after a rank-:math:`r` layer, the second
            layer alone would cost :math:`I^2/32` per row), so a step costs
            :math:`O((I + B) r d + \mathrm{nnz} \cdot r)`.
            (default: :obj:`"dense"`)
        rank (int): Rank of the ``"lowrank"`` first layer.
            (default: :obj:`64`)
        dropout ((float, float)): Dropout after the two hidden layers.
            (default: :obj:`(0.31, 0.5)`)
        negative_slope (float): LeakyReLU slope (must not be 1, which would
            make the critic linear). (default: :obj:`0.2`)
    """
    def __init__(self, num_items: int, critic: str = 'dense', rank: int = 64,
                 dropout: Tuple[float, float] = (0.31, 0.5),
                 negative_slope: float = 0.2):
        super().__init__()
        if critic not in CRITICS:
            raise ValueError(f"unknown critic '{critic}', expected one of "
                             f"{CRITICS}")
        if negative_slope == 1:
            raise ValueError("negative_slope=1 makes the critic linear")
        self.critic = critic
        if critic == 'lowrank':
            h1, h2 = rank, max(rank // 2, 1)
        else:
            h1, h2 = max(num_items // 4, 1), max(num_items // 8, 1)
        Linear = torch.nn.Linear
        act = torch.nn.LeakyReLU(negative_slope)
        # ``input`` is the only I-wide layer; no bias before batch norm
        # (it would get zero gradient).
        self.input = InputLayer(num_items, h1)
        self.head = torch.nn.Sequential(
            torch.nn.BatchNorm1d(h1), act, Dropout(dropout[0]),
            Linear(h1, h2, bias=False), torch.nn.BatchNorm1d(h2), act,
            Dropout(dropout[1]), Linear(h2, 1))

    @property
    def factorised(self) -> bool:
        r"""Whether the critic reads :class:`CriticRows`."""
        return self.critic != 'dense'

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def first_layer(self, x: Rows) -> Tensor:
        r""":math:`\mathbf{x}\mathbf{W}_1^\top` of dense rows, of
        :class:`CriticRows`, or of a list of them (concatenated)."""
        if isinstance(x, Tensor):
            return self.input(x)
        rows = [x] if isinstance(x, CriticRows) else list(x)
        return rows_matmul_t(rows, self.input.weight)

    def forward(self, x: Rows) -> Tensor:
        return self.head(self.first_layer(x)).view(-1)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        r"""Parameters excluded from autograd (for the generator's term,
        whose gradient the critic does not use)."""
        flags = [p.requires_grad for p in self.parameters()]
        self.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(self.parameters(), flags):
                p.requires_grad_(flag)

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        r""":math:`\mathbb{E}[(\|\nabla D(\hat{\mathbf{x}})\|_2 - 1)^2]` at
        random interpolates of paired dense real and fake rows."""
        alpha = torch.rand(real.size(0), 1, device=real.device,
                           dtype=real.dtype)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self(x_hat).sum(), x_hat,
                                    create_graph=True)
        return (grad.norm(2, dim=1) - 1).pow(2).mean()

    def loss(self, real: Rows, fake: Rows, gp_weight: float = 0.3) -> Tensor:
        r"""The critic loss :math:`\mathcal{L}_D` for ``B`` ``real`` rows and
        ``M B`` ``fake`` rows (``M`` generators, each paired with the same
        real rows for the penalty): dense ``[B, I]`` / ``[M B, I]`` tensors
        for the ``"dense"`` critic, :class:`CriticRows` (fake: a list of
        ``M``) otherwise. Inputs are detached."""
        if isinstance(real, Tensor):
            real, fake = real.detach(), fake.detach()
            repeats = fake.size(0) // real.size(0)
            gp = self.gradient_penalty(real.repeat(repeats, 1), fake)
            return -self(real).mean() + self(fake).mean() + gp_weight * gp

        h = self.first_layer([real.detach()] + [r.detach() for r in fake])
        h_real, h_fake = h[:real.num_rows], h[real.num_rows:]
        h_real_pairs = h_real.repeat(h_fake.size(0) // h_real.size(0), 1)
        # Same random draws, in the same order, as the dense path.
        alpha = torch.rand(h_fake.size(0), 1, device=h_fake.device,
                           dtype=h_fake.dtype)
        h_hat = alpha * h_real_pairs + (1 - alpha) * h_fake
        delta, = torch.autograd.grad(self.head(h_hat).sum(), h_hat,
                                     create_graph=True)
        sq = input_grad_sq_norm(delta, self.input.weight)
        gp = (sq.clamp_min(1e-24).sqrt() - 1).pow(2).mean()
        return (-self.head(h_real).mean() + self.head(h_fake).mean() +
                gp_weight * gp)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.input}, '
                f'critic={self.critic})')


# Range of the Gumbel noise -log(-log(u)) for u clamped to
# [1e-10, 1 - 1e-7], as in :meth:`MMSSL.real_distribution`.
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

