r"""Item-item :math:`k`-nearest-neighbour graphs on raw item features, as
FREEDOM and LATTICE build them, computed in chunks so that the
:math:`I \times I` similarity matrix is never held in memory."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import coalesce

from pyg_mmssl.ranking import topk_chunks


@torch.no_grad()
def knn_item_graph(x: Tensor, k: int, chunk_size: int = 1024,
                   symmetrize: bool = False) -> Tuple[Tensor, Tensor]:
    r"""The normalised cosine :math:`k`-nearest-neighbour graph of the rows of
    ``x``, from the `"A Tale of Two Graphs: Freezing and Denoising Graph
    Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_ paper (FREEDOM; the graph of
    LATTICE before its learning):

    .. math::
        \mathbf{A}_{ij} = \begin{cases} 1 & j \in
        \mathrm{top}\text{-}k_{j'} \, \bar{\mathbf{x}}_i^\top
        \bar{\mathbf{x}}_{j'} \\ 0 & \text{otherwise} \end{cases},
        \qquad \hat{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A}
        \mathbf{D}^{-1/2}

    with :math:`\bar{\mathbf{x}}` the row-wise L2-normalised features and
    :math:`\mathbf{D}` the diagonal of :math:`\mathbf{A}`'s row sums (the
    neighbours of each item). As in FREEDOM, :math:`\mathbf{A}` is the
    directed graph (row :math:`i` holds the :math:`k` nearest items of
    :math:`i`, itself included, since :math:`\bar{\mathbf{x}}_i^\top
    \bar{\mathbf{x}}_i = 1` is the largest similarity); every row then sums
    to :math:`k` and every weight is :math:`1/k`. With :obj:`symmetrize`,
    :math:`\mathbf{A}` becomes :math:`\max(\mathbf{A}, \mathbf{A}^\top)`
    first, so that :math:`\hat{\mathbf{A}}` is a symmetric matrix. Exact
    ties are broken as :meth:`torch.Tensor.topk` breaks them; an all-zero
    row is equally similar (zero) to every item.

    The edges follow PyG's ``source_to_target`` flow: ``(j, i)`` for each
    neighbour :math:`j` of item :math:`i`, with weight
    :math:`\hat{\mathbf{A}}_{ij}`, so that a propagation layer computes
    :math:`\mathbf{h}_i = \sum_j \hat{\mathbf{A}}_{ij} \mathbf{h}_j`
    (FREEDOM's :math:`\hat{\mathbf{A}} \mathbf{H}`).

    Cost: :math:`O(I^2 d)` time for the similarities plus :math:`O(I^2)` for
    the top-:math:`k` selections, with :math:`I` items of :math:`d`
    features; memory :math:`O(\text{chunk} \cdot I + I k + I d)`: one
    ``chunk_size x I`` block of similarities at a time, the output and the
    normalised copy of ``x``. The similarities are computed on ``x``'s
    device, in its dtype.

    Args:
        x (torch.Tensor): Item features ``[I, d]``.
        k (int): Neighbours per item (at most :math:`I`; larger values keep
            every item).
        chunk_size (int): Items whose similarities are computed at a time.
            (default: :obj:`1024`)
        symmetrize (bool): Symmetrise :math:`\mathbf{A}` before normalising.
            (default: :obj:`False`)

    Returns:
        ``(edge_index, edge_weight)``: ``[2, E]`` (neighbour, item) pairs,
        sorted by (item, neighbour), and their ``[E]`` weights (``x``'s
        dtype), :math:`E = I \min(k, I)` without :obj:`symmetrize`.

    Shapes:
        - **input:** :math:`(I, d)`
        - **output:** :math:`(2, E)`, :math:`(E)`
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if x.dim() != 2:
        raise ValueError(f"features must be a [num_items, d] matrix, got "
                         f"shape {tuple(x.shape)}")
    num_items = x.size(0)
    x = F.normalize(x, dim=-1)
    neighbours = [top.indices for _, top in topk_chunks(
        x, x, k, chunk_size=chunk_size)]
    col = torch.cat(neighbours) if neighbours else x.new_empty(
        (0, 0), dtype=torch.long)
    row = torch.arange(num_items, device=x.device).view(-1, 1).expand_as(col)
    # (target item, neighbour) as PyG's (source, target): (neighbour, item).
    edge_index = torch.stack([col.reshape(-1), row.reshape(-1)])
    if symmetrize:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    # Sorted by (item, neighbour), duplicates (from symmetrising) merged.
    edge_index = coalesce(edge_index.flip(0), num_nodes=num_items).flip(0)
    deg = torch.bincount(edge_index[1], minlength=num_items).to(x.dtype)
    inv_sqrt = deg.rsqrt().masked_fill(deg == 0, 0.)
    weight = inv_sqrt[edge_index[0]] * inv_sqrt[edge_index[1]]
    return edge_index, weight
