r"""Full-ranking evaluation: Recall, NDCG, Precision, Hit ratio and MAP at K.

For a user :math:`u` with relevant items :math:`\mathcal{R}_u` and ranked list
:math:`(i_1, \ldots, i_K)`, with :math:`h_k = [i_k \in \mathcal{R}_u]`:

.. math::
    \mathrm{Recall@K} = \frac{\sum_k h_k}{|\mathcal{R}_u|}, \quad
    \mathrm{Precision@K} = \frac{\sum_k h_k}{K}, \quad
    \mathrm{Hit@K} = [\textstyle\sum_k h_k > 0],

    \mathrm{NDCG@K} = \frac{\sum_k h_k / \log_2(k + 1)}
    {\sum_{k=1}^{\min(|\mathcal{R}_u|, K)} 1 / \log_2(k + 1)}, \quad
    \mathrm{MAP@K} = \frac{\sum_k h_k \, \mathrm{Precision@k}}
    {\min(|\mathcal{R}_u|, K)}.

Each is averaged over the users with at least one relevant item. These match
:mod:`torch_geometric.metrics`' ``LinkPred*`` metrics where both define one.
"""
from typing import Dict, Sequence

import torch
from torch import Tensor

from pyg_mmssl.distributed import all_reduce_sum_, shard
from pyg_mmssl.ranking import (CSR, Exclude, as_patterns, csr_rows,
                               topk_chunks)

DEFAULT_KS = (10, 20, 50)
METRICS = ('recall', 'ndcg', 'precision', 'hit', 'map')


def ranking_metrics(hits: Tensor, num_relevant: Tensor,
                    ks: Sequence[int] = DEFAULT_KS) -> Dict[str, Tensor]:
    r"""Per-user metrics from a ``[B, max(ks)]`` hit matrix (``hits[b, k]``
    is whether the ``k``-th ranked item of user ``b`` is relevant) and the
    number of relevant items of each user (must be positive).

    Returns ``{"recall@10": Tensor[B], ...}``.
    """
    if bool((num_relevant <= 0).any()):
        raise ValueError("every evaluated user needs at least one relevant "
                         "item")
    hits = hits.float()
    n = num_relevant.to(hits.dtype)
    kmax = max(ks)
    pos = torch.arange(1, hits.size(1) + 1, device=hits.device,
                       dtype=hits.dtype)
    discount = 1.0 / torch.log2(pos + 1)
    ideal = torch.cumsum(torch.ones(kmax, device=hits.device) /
                         torch.log2(torch.arange(2, kmax + 2,
                                                 device=hits.device).float()),
                         0)
    cum_hits = torch.cumsum(hits, 1)
    out = {}
    for k in ks:
        h = hits[:, :k]
        num_hits = h.sum(1)
        out[f'recall@{k}'] = num_hits / n
        out[f'precision@{k}'] = num_hits / k
        out[f'hit@{k}'] = (num_hits > 0).to(hits.dtype)
        dcg = (h * discount[:k]).sum(1)
        idcg = ideal[n.clamp(max=k).long() - 1]
        out[f'ndcg@{k}'] = dcg / idcg
        prec_at = cum_hits[:, :k] / pos[:k]
        out[f'map@{k}'] = (prec_at * h).sum(1) / n.clamp(max=k)
    return out


@torch.no_grad()
def evaluate(user_emb: Tensor, item_emb: Tensor, relevant: CSR,
             exclude: Exclude = None, ks: Sequence[int] = DEFAULT_KS,
             chunk_size: int = 1024, distributed: bool = False
             ) -> Dict[str, float]:
    r"""Full-ranking evaluation of inner-product scores
    :math:`\mathbf{e}_u^\top \mathbf{e}_i` over all items.

    Args:
        user_emb (torch.Tensor): ``[U, d]`` user embeddings.
        item_emb (torch.Tensor): ``[I, d]`` item embeddings.
        relevant ((torch.Tensor, torch.Tensor)): CSR ``(rowptr, col)`` of the
            held-out items of each user.
        exclude ((torch.Tensor, torch.Tensor) or list, optional): CSR
            pattern(s) of items never ranked (the training items, and
            optionally the validation items).
        ks (list of int): Cut-offs. (default: :obj:`(10, 20, 50)`)
        chunk_size (int): Users scored at a time; memory is
            ``chunk_size x I``. (default: :obj:`1024`)
        distributed (bool): Each rank of the running
            :mod:`torch.distributed` group scores its share of the users and
            the sums are all-reduced, so every rank returns the metrics of
            all users. (default: :obj:`False`)

    Returns:
        ``{"recall@20": float, ...}``, averaged over users with at least one
        relevant item, plus ``"num_users"``.
    """
    device = user_emb.device
    rowptr, col = (t.to(device) for t in relevant)
    exclude = [tuple(t.to(device) for t in p) for p in as_patterns(exclude)]
    num_rel = rowptr[1:] - rowptr[:-1]
    users = (num_rel > 0).nonzero().view(-1)
    num_users = users.numel()
    if distributed:
        users = users[shard(num_users)]
    sums: Dict[str, Tensor] = {}
    for rows, top in topk_chunks(user_emb, item_emb, max(ks), users, exclude,
                                 chunk_size):
        is_rel = torch.zeros(rows.numel(), item_emb.size(0), dtype=torch.bool,
                             device=device)
        local, items = csr_rows((rowptr, col), rows)
        is_rel[local, items] = True
        hits = is_rel.gather(1, top.indices)
        for key, value in ranking_metrics(hits, num_rel[rows], ks).items():
            sums[key] = sums.get(key, 0.) + value.sum()
    keys = [f'{m}@{k}' for k in ks for m in METRICS]
    total = torch.stack([torch.as_tensor(sums.get(key, 0.), device=device,
                                         dtype=torch.float64)
                         for key in keys])
    if distributed:
        all_reduce_sum_(total)
    out = {key: float(v) / max(num_users, 1) for key, v in zip(keys, total)}
    out['num_users'] = int(num_users)
    return out
