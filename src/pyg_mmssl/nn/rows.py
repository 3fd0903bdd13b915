r"""Item-wide rows in factorised form, and the sparse autograd functions
their products use.

MMSSL's critic reads rows :math:`\mathbf{x} \in \mathbb{R}^I` over all
items. Its rows are a low-rank product plus a sparse part (a generated row is
:math:`\mathbf{p}_u \mathbf{P}_i^\top` with the training items zeroed; the
Gumbel-softmax of an observed row is non-zero only on its training items), so
products with them can be computed without forming them
(:class:`CriticRows`). A :class:`RowSource` builds rows in whichever form
their reader asks for.
"""
from itertools import accumulate
from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_mmssl.nn.spmm import sorted_csr, transposed_csr


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
    only the rows it needs (neither the dense product nor a gather of
    rows per position)."""
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


class RowSource(NamedTuple):
    r"""Rows that can be built as a dense ``[B, I]`` tensor or as
    :class:`CriticRows`, each on demand: the reader (a critic) calls the
    form it reads, so the producer does not need to know which one."""
    dense: Callable[[], Tensor]
    factorised: Callable[[], CriticRows]
