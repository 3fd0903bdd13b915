r"""Normalised user-item adjacency, built once per graph in the propagation
backend of choice.

A *backend* is the adjacency type handed to :class:`MMSSLConv` (or any PyG
layer with a ``message_and_aggregate``):

* ``"edge_index"``: :class:`torch_geometric.EdgeIndex`, sorted by target, fused
  sparse-dense matmul,
* ``"csr"``: a ``torch.sparse_csr_tensor`` (transposed adjacency),
* ``"sparse_tensor"``: a :class:`torch_sparse.SparseTensor` (needs the
  ``sparse`` extra),
* ``"scatter"``: a plain ``[2, E]`` tensor, gather + scatter message passing.
"""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
import torch_geometric.typing
from torch_geometric.typing import Adj, OptTensor, SparseTensor

from pyg_mmssl.nn.conv.mmssl_conv import bipartite_norm
from pyg_mmssl.nn.spmm import (cache_transpose, sort_entries,
                                sorted_csr)

BACKENDS = ('edge_index', 'csr', 'sparse_tensor', 'scatter')


def available_backends() -> Tuple[str, ...]:
    if torch_geometric.typing.WITH_TORCH_SPARSE:
        return BACKENDS
    return tuple(b for b in BACKENDS if b != 'sparse_tensor')


def default_backend(device: torch.device) -> str:
    r"""The fastest available backend as measured by
    ``benchmarks/propagation.py`` (forward + backward of a user-item-user
    hop; figures in ``benchmarks/RESULTS.md``): ``torch_sparse`` when
    installed, else ``torch.sparse`` CSR, on CPU and CUDA alike.
    (:class:`EdgeIndex` runs unfused: its fused matmul's backward is wrong
    on rectangular adjacencies in PyG 2.8, see :class:`MMSSLConv`.)"""
    del device  # the same choice on CPU and CUDA
    return 'sparse_tensor' if 'sparse_tensor' in available_backends() \
        else 'csr'


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown propagation backend '{backend}', expected "
                         f"one of {BACKENDS}")
    if backend not in available_backends():
        raise ValueError(f"backend '{backend}' needs torch_sparse; install "
                         f"the 'sparse' extra (pip install pyg_mmssl[sparse])")
    return backend


class Propagation(NamedTuple):
    r"""What a propagation layer needs for one direction: ``adj`` and the
    normalised ``edge_weight`` (:obj:`None` where the weights live inside a
    sparse ``adj``)."""
    adj: Adj
    edge_weight: OptTensor
    size: Tuple[int, int]


def build_adjacency(edge_index: Tensor, size: Tuple[int, int],
                    edge_weight: Tensor, backend: str,
                    cache: bool = True) -> Propagation:
    r"""Adjacency for messages from ``edge_index[0]`` to ``edge_index[1]``
    with (already normalised) ``edge_weight``, in ``backend``'s type. With
    :obj:`cache`, sparse types carry their transpose for the backward pass
    (:func:`cache_transpose`, one more sort)."""
    check_backend(backend)
    if backend == 'scatter':
        return Propagation(edge_index, edge_weight, size)
    if backend == 'edge_index':
        ei = EdgeIndex(edge_index, sparse_size=size)
        ei, perm = ei.sort_by('col')
        return Propagation(ei, edge_weight[perm], size)
    # Transposed adjacency (rows are targets), entries by (target, source):
    # no sort when they already are (learned graphs' item-to-user direction),
    # one stable sort by target when sorted by source (their user-to-item).
    row, col, value = sort_entries(edge_index[1], edge_index[0],
                                   edge_weight, size[1], size[0])
    if backend == 'sparse_tensor':
        adj_t = SparseTensor(row=row, col=col, value=value,
                             sparse_sizes=(size[1], size[0]), is_sorted=True,
                             trust_data=True)
    else:
        adj_t = sorted_csr(row, col, value, size[1], size[0])
    if cache:
        cache_transpose(adj_t)
    return Propagation(adj_t, None, size)


class BipartiteGraph(NamedTuple):
    r"""A normalised user-item graph in both directions, plus the homogeneous
    :math:`(U + I) \times (U + I)` adjacency :math:`\begin{pmatrix} 0 &
    \hat{A} \\ \hat{A}^\top & 0 \end{pmatrix}` for layers that index users
    and items in one space (PyG's :class:`LightGCN`)."""
    item_to_user: Propagation
    user_to_item: Propagation
    num_users: int
    num_items: int

    @staticmethod
    def build(edge_index: Tensor, num_users: int, num_items: int,
              edge_weight: OptTensor = None, normalize: str = 'sym',
              backend: str = 'edge_index',
              dtype: Optional[torch.dtype] = None) -> 'BipartiteGraph':
        r"""``edge_index`` holds ``(user, item)`` pairs. Unless
        :obj:`normalize` is ``"mean"``, each direction's adjacency is the
        other's transpose and serves as it in the backward pass. ``dtype``
        is the weights' when :obj:`edge_weight` is omitted (``float32``
        by default)."""
        rev = edge_index.flip(0)
        w_ui = bipartite_norm(edge_index, (num_users, num_items), edge_weight,
                              normalize, dtype)
        symmetric = normalize != 'mean'
        w_iu = w_ui if symmetric else bipartite_norm(
            rev, (num_items, num_users), edge_weight, normalize, dtype)
        item_to_user = build_adjacency(rev, (num_items, num_users), w_iu,
                                       backend, cache=not symmetric)
        user_to_item = build_adjacency(edge_index, (num_users, num_items),
                                       w_ui, backend, cache=not symmetric)
        if symmetric:
            cache_transpose(item_to_user.adj, user_to_item.adj)
            cache_transpose(user_to_item.adj, item_to_user.adj)
        return BipartiteGraph(item_to_user, user_to_item, num_users,
                              num_items)


def homogeneous_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                          normalize: str = 'sym',
                          backend: str = 'edge_index',
                          dtype: Optional[torch.dtype] = None) -> Propagation:
    r"""The normalised :math:`(U + I) \times (U + I)` adjacency of a user-item
    graph, items offset by ``num_users``, weights in ``dtype`` (default
    ``float32``)."""
    n = num_users + num_items
    user, item = edge_index[0], edge_index[1] + num_users
    full = torch.cat([torch.stack([user, item]), torch.stack([item, user])],
                     dim=1)
    weight = bipartite_norm(full, (n, n), None, normalize, dtype)
    return build_adjacency(full, (n, n), weight, backend)
