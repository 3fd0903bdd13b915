from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, scatter

from pyg_mmssl.nn.spmm import spmm

NORMALIZATIONS = ('sym', 'mean', 'none')


def bipartite_norm(
    edge_index: Tensor,
    size: Tuple[int, int],
    edge_weight: OptTensor = None,
    normalize: str = 'sym',
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""Edge weights of a normalised bipartite adjacency for messages
    flowing from ``edge_index[0]`` (source nodes) to ``edge_index[1]``
    (target nodes):

    .. math::
        \hat{a}_{ji} = \begin{cases}
        w_{ji} / \sqrt{d_j d_i} & \text{sym (LightGCN)} \\
        w_{ji} / d_i & \text{mean} \\
        w_{ji} & \text{none}
        \end{cases}

    where :math:`d_j` (:math:`d_i`) is the weighted degree of source node
    :math:`j` (target node :math:`i`). Isolated nodes get no weight (no
    division by zero).

    Args:
        edge_index (torch.Tensor): The ``[2, E]`` (source, target) indices.
        size ((int, int)): Number of source and target nodes.
        edge_weight (torch.Tensor, optional): Edge weights; ones if omitted.
        normalize (str, optional): ``"sym"``, ``"mean"`` or ``"none"``.
            (default: :obj:`"sym"`)
        dtype (torch.dtype, optional): The weights' dtype when
            :obj:`edge_weight` is omitted. (default: :obj:`float32`)
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation '{normalize}', expected one "
                         f"of {NORMALIZATIONS}")
    src, dst = edge_index[0], edge_index[1]
    if normalize == 'none':
        return edge_weight if edge_weight is not None else torch.ones(
            src.numel(), dtype=dtype or torch.float, device=src.device)
    dtype = edge_weight.dtype if edge_weight is not None else (dtype or
                                                               torch.float)

    def degree(index: Tensor, num_nodes: int) -> Tensor:
        if edge_weight is None:  # counting is faster than a scatter
            return torch.bincount(index, minlength=num_nodes).to(dtype)
        return scatter(edge_weight, index, 0, dim_size=num_nodes,
                       reduce='sum')

    deg_dst = degree(dst, size[1])
    if normalize == 'mean':
        # Not in place: the reciprocal's backward reads its output.
        inv = deg_dst.reciprocal().masked_fill(deg_dst == 0, 0.)
        out = inv.index_select(0, dst)
        return out if edge_weight is None else out.mul_(edge_weight)
    deg_src = degree(src, size[0])
    inv_src = deg_src.rsqrt().masked_fill(deg_src == 0, 0.)
    inv_dst = deg_dst.rsqrt().masked_fill(deg_dst == 0, 0.)
    out = inv_src.index_select(0, src)
    if edge_weight is not None:
        out.mul_(edge_weight)
    return out.mul_(inv_dst.index_select(0, dst))


def _sparse_to_coo(adj_t: Adj) -> Tuple[Tensor, OptTensor, Tuple[int, int]]:
    r"""``(edge_index, value, (num_src, num_dst))`` of a transposed sparse
    adjacency (rows are targets, columns are sources)."""
    if isinstance(adj_t, SparseTensor):
        row, col, value = adj_t.coo()
        return torch.stack([col, row]), value, (adj_t.size(1), adj_t.size(0))
    coo = adj_t.to_sparse_coo().coalesce()
    row, col = coo.indices()
    return torch.stack([col, row]), coo.values(), (adj_t.size(1),
                                                   adj_t.size(0))


def _coo_to_sparse_like(like: Adj, edge_index: Tensor, value: Tensor,
                        size: Tuple[int, int]) -> Adj:
    if isinstance(like, SparseTensor):
        return SparseTensor(row=edge_index[1], col=edge_index[0], value=value,
                            sparse_sizes=(size[1], size[0]))
    coo = torch.sparse_coo_tensor(edge_index.flip(0), value,
                                  (size[1], size[0])).coalesce()
    return coo.to_sparse_csr() if like.layout == torch.sparse_csr else coo


class MMSSLConv(MessagePassing):
    r"""The normalised bipartite propagation layer of MMSSL from the
    `"Multi-Modal Self-Supervised Learning for Recommendation"
    <https://arxiv.org/abs/2302.10632>`_ paper: parameter-free, LightGCN-style
    message passing from one node type to another (item :math:`\to` user or
    user :math:`\to` item), used both for modality propagation and for the
    collaborative layers.

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)} \hat{a}_{ji}
        \, \mathbf{x}_j

    with :math:`\hat{a}_{ji}` given by :func:`bipartite_norm` (symmetric
    :math:`w_{ji} / \sqrt{d_j d_i}` by default). Normalisation is computed on
    the fly, or once per graph with :obj:`cached=True`. Pass
    :obj:`normalize="none"` together with precomputed weights to propagate
    through a normalised adjacency you cache yourself.

    Args:
        normalize (str, optional): ``"sym"``, ``"mean"`` or ``"none"``.
            (default: :obj:`"sym"`)
        cached (bool, optional): If :obj:`True`, the normalised adjacency of
            the first call is reused in all later calls (transductive setting
            with a fixed graph). (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)` or
          :math:`((|\mathcal{V}_s|, F), (|\mathcal{V}_t|, F))` if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` (or a sparse adjacency),
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}_t|, F)`
    """
    # EdgeIndex goes through gather + sorted scatter, not a fused matmul:
    # PyG 2.8's EdgeIndex.matmul backward is wrong (or crashes) on
    # rectangular, weighted adjacencies (tests/nn/conv/test_mmssl_conv.py).
    SUPPORTS_FUSED_EDGE_INDEX = False

    def __init__(self, normalize: str = 'sym', cached: bool = False,
                 **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation '{normalize}', expected "
                             f"one of {NORMALIZATIONS}")
        self.normalize = normalize
        self.cached = cached
        self._cache: Optional[Tuple[Adj, OptTensor]] = None

    def reset_parameters(self):
        super().reset_parameters()
        self._cache = None

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
        edge_index: Adj,
        edge_weight: OptTensor = None,
        size: Optional[Tuple[int, int]] = None,
    ) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        if size is None:
            num_dst = x[1].size(0) if x[1] is not None else x[0].size(0)
            size = (x[0].size(0), num_dst)

        if self.normalize != 'none':
            if self.cached and self._cache is not None:
                edge_index, edge_weight = self._cache
            else:
                edge_index, edge_weight = self._norm(edge_index, edge_weight,
                                                     size, x[0].dtype)
                if self.cached:
                    self._cache = (edge_index, edge_weight)

        # propagate_type: (x: PairTensor, edge_weight: OptTensor)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight,
                              size=size)

    def _norm(self, edge_index: Adj, edge_weight: OptTensor,
              size: Tuple[int, int], dtype: torch.dtype):
        if isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(
                edge_index):
            ei, value, size = _sparse_to_coo(edge_index)
            value = bipartite_norm(ei, size, value, self.normalize, dtype)
            return _coo_to_sparse_like(edge_index, ei, value, size), None
        return edge_index, bipartite_norm(edge_index, size, edge_weight,
                                          self.normalize, dtype)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tuple[Tensor, Tensor]
                              ) -> Tensor:
        return spmm(adj_t, x[0], reduce=self.aggr)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(normalize={self.normalize})'
