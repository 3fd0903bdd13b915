r"""Modality-aware structure learning: the learned user-item graph of a
modality keeps, for every user, the ``k`` highest-scoring items that are not
already training items."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from pyg_mmssl.ranking import Exclude, pruned_topk


def num_learned_edges(num_items: int, rate: float) -> int:
    r""":math:`k = \max(1, \mathrm{round}(\text{rate} \cdot I))`."""
    return max(1, round(rate * num_items))


@torch.no_grad()
def topk_graph(user_emb: Tensor, item_emb: Tensor, k: int,
               exclude: Exclude = None, chunk_size: int = 1024,
               users: Optional[Tensor] = None, scores: bool = False
               ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    r"""``[2, E]`` (user, item) edges: the top-``k`` items of
    :math:`\mathbf{p}_u^\top \mathbf{p}_i` for **every** user (or the given
    ``users``), excluded items never chosen, computed ``chunk_size`` users at
    a time (memory ``chunk_size x I``, never ``U x I``) by the exact
    norm-pruned search of :func:`~pyg_mmssl.ranking.pruned_topk`. A user
    with fewer than ``k`` admissible items keeps all of them. With
    ``scores``, also returns each edge's score ``[E]``."""
    if users is None:
        users = torch.arange(user_emb.size(0), device=user_emb.device)
    values, index = pruned_topk(user_emb, item_emb, k, users, exclude,
                                chunk_size, sorted=False)
    # Items in ascending order per user: the edges come out sorted by
    # (user, item), so adjacency builders need not sort them again.
    cols, perm = index.sort(dim=1)
    rows = users.view(-1, 1).expand_as(cols)
    if bool(torch.isfinite(values).all()):  # k items for every user
        keep = None
        edges = torch.stack([rows.reshape(-1), cols.view(-1)])
    else:  # -inf marks the slots of users with fewer admissible items
        keep = torch.isfinite(values.gather(1, perm))
        edges = torch.stack([rows[keep], cols[keep]])
    if not scores:
        return edges
    values = values.gather(1, perm)
    return edges, values.view(-1) if keep is None else values[keep]
