r"""Chunked full-ranking top-k: the one primitive behind evaluation,
``recommend`` and MMSSL's learned-graph refresh. Memory is bounded by
``chunk_size x num_items``; a dense ``users x items`` matrix is never built."""
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

CSR = Tuple[Tensor, Tensor]  # (rowptr, col) of a users x items pattern
Exclude = Union[None, CSR, Sequence[CSR]]


def as_patterns(exclude: Exclude) -> Sequence[CSR]:
    if exclude is None:
        return []
    if len(exclude) == 2 and isinstance(exclude[0], Tensor):
        return [exclude]
    return list(exclude)


def csr_rows(csr: CSR, rows: Tensor) -> Tuple[Tensor, Tensor]:
    r"""``(local_row, col)`` of every non-zero in ``rows`` of a CSR pattern,
    ``local_row`` indexing into ``rows``. Vectorised (no Python loop)."""
    rowptr, col = csr
    start, end = rowptr[rows], rowptr[rows + 1]
    count = end - start
    local = torch.repeat_interleave(torch.arange(rows.numel(),
                                                 device=rows.device), count)
    offset = torch.arange(int(count.sum()), device=rows.device)
    offset = offset - torch.repeat_interleave(torch.cumsum(count, 0) - count,
                                              count)
    return local, col[start[local] + offset]


def masked_topk(scores: Tensor, k: int, rows: Tensor,
                exclude: Exclude = None):
    r"""Top-``k`` ``(values, indices)`` of each row of ``scores`` (a
    ``[B, I]`` chunk for users ``rows``), never returning an excluded item.

    Excluded items are set to :math:`-\infty`; if a user has fewer than ``k``
    admissible items, the trailing slots hold excluded items with score
    :math:`-\infty` (``scores`` is modified in place). ``exclude`` is one
    CSR pattern or a list of them."""
    for pattern in as_patterns(exclude):
        local, col = csr_rows(pattern, rows)
        scores[local, col] = float('-inf')
    k = min(k, scores.size(1))
    return scores.topk(k, dim=1)


def topk_chunks(user_emb: Tensor, item_emb: Tensor, k: int,
                users: Optional[Tensor] = None, exclude: Exclude = None,
                chunk_size: int = 1024) -> Iterator[Tuple[Tensor, Tensor]]:
    r"""Yields ``(users_chunk, topk)`` (``topk.values``, ``topk.indices``,
    each ``[chunk, k]``) for inner-product scores
    :math:`\mathbf{e}_u^\top \mathbf{e}_i`, ``chunk_size`` users at a time."""
    if users is None:
        users = torch.arange(user_emb.size(0), device=user_emb.device)
    for start in range(0, users.numel(), chunk_size):
        rows = users[start:start + chunk_size]
        scores = user_emb[rows] @ item_emb.t()
        yield rows, masked_topk(scores, k, rows, exclude)
