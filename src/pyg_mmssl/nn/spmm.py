r"""Sparse-dense products over a fixed graph whose backward reuses a cached
transpose.

The gradient of :math:`\mathbf{Y} = \mathbf{A} \mathbf{X}` with respect to
:math:`\mathbf{X}` is :math:`\mathbf{A}^\top \partial\mathbf{Y}`. PyTorch's
sparse matmul re-derives :math:`\mathbf{A}^\top` (a sort of all edges) in
every backward pass; for a graph that is built once and propagated through
many times, :func:`cache_transpose` stores it once and :func:`spmm` uses it.
"""
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric.typing import Adj, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor
from torch_geometric.utils import spmm as pyg_spmm

_ATTR = '_pyg_mmssl_csr_pair'


def sorted_csr(row: Tensor, col: Tensor, value: Tensor, num_rows: int,
               num_cols: int) -> Tensor:
    r"""A ``torch.sparse`` CSR tensor from entries already sorted by
    ``row``."""
    count = torch.bincount(row, minlength=num_rows)
    crow = torch.cat([count.new_zeros(1), count.cumsum(0)])
    with warnings.catch_warnings():  # "CSR support is in beta state"
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, (num_rows, num_cols),
                                       check_invariants=False)


def _narrow(index: Tensor, bound: int) -> Tensor:
    r"""``index`` (values below ``bound``) in the narrowest integer type that
    holds them: the same order, fewer bytes to sort."""
    for dtype in (torch.int16, torch.int32):
        if bound <= torch.iinfo(dtype).max + 1:
            return index.to(dtype)
    return index


def _nondecreasing(x: Tensor) -> bool:
    return x.numel() < 2 or bool((x[1:] >= x[:-1]).all())


def sort_entries(major: Tensor, minor: Tensor, value: Tensor,
                 num_major: int, num_minor: int
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""``(major, minor, value)`` of a sparse matrix's entries, ordered by
    ``(major, minor)``; returned as they are when they already are. When
    ``minor`` is non-decreasing (as when transposing a row-sorted matrix),
    one stable sort of ``major`` alone, in the narrowest integer type its
    values fit (fewer bytes to sort than a combined key), and the sorted
    values replace one gather."""
    if _nondecreasing(minor):
        if _nondecreasing(major):
            return major, minor, value
        major_sorted, perm = torch.sort(_narrow(major, num_major),
                                        stable=True)
        return (major_sorted.to(major.dtype), minor.index_select(0, perm),
                value.index_select(0, perm))
    key = _narrow(major * num_minor + minor, num_major * num_minor)
    if _nondecreasing(key):
        return major, minor, value
    perm = key.argsort()
    return (major.index_select(0, perm), minor.index_select(0, perm),
            value.index_select(0, perm))


def transposed_csr(row: Tensor, col: Tensor, value: Tensor, num_rows: int,
                   num_cols: int) -> Tensor:
    r"""The CSR tensor of the transpose of the ``[num_rows, num_cols]``
    matrix with entries ``value`` at distinct ``(row, col)`` (one sort)."""
    col, row, value = sort_entries(col, row, value, num_cols, num_rows)
    return sorted_csr(col, row, value, num_cols, num_rows)


def cache_transpose(adj_t: Adj, adj: Optional[Adj] = None) -> Adj:
    r"""Stores on ``adj_t`` (a :class:`torch_sparse.SparseTensor` or a
    ``torch.sparse`` CSR tensor with constant values) CSR copies of itself and
    of its transpose, for :func:`spmm`; returns ``adj_t``. ``adj``, if given,
    is that transpose, already built in the same type (no sort then). Other
    types are returned unchanged."""
    if isinstance(adj_t, SparseTensor):
        with warnings.catch_warnings():  # "CSR support is in beta state"
            warnings.simplefilter('ignore', UserWarning)
            pair = (adj_t.to_torch_sparse_csr_tensor(),
                    (adj_t.t() if adj is None else
                     adj).to_torch_sparse_csr_tensor())
    elif (is_torch_sparse_tensor(adj_t)
          and adj_t.layout == torch.sparse_csr):
        # Not (adj_t, ...): the tensor would hold a reference to itself.
        pair = (None, adj_t.t().to_sparse_csr() if adj is None else adj)
    else:
        return adj_t
    setattr(adj_t, _ATTR, pair)
    return adj_t


class _CachedSpmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, csr: Tensor, csr_t: Tensor) -> Tensor:
        ctx.csr_t = csr_t
        return torch.sparse.mm(csr, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        return torch.sparse.mm(ctx.csr_t, grad_out), None, None


def spmm(adj_t: Adj, x: Tensor, reduce: str = 'sum') -> Tensor:
    r""":func:`torch_geometric.utils.spmm`, through the cached transpose of
    :func:`cache_transpose` when there is one (sum reduction, values that need
    no gradient, matching dtype); otherwise PyG's own."""
    pair = getattr(adj_t, _ATTR, None)
    if pair is not None and reduce in ('sum', 'add'):
        csr, csr_t = pair
        csr = adj_t if csr is None else csr
        if not csr.values().requires_grad and csr.dtype == x.dtype:
            return _CachedSpmm.apply(x, csr, csr_t)
    return pyg_spmm(adj_t, x, reduce=reduce)
