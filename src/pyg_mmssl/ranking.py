r"""Chunked full-ranking top-k: the one primitive behind evaluation,
``recommend`` and MMSSL's learned-graph refresh (which uses its pruned form,
:func:`pruned_topk`). Memory is bounded by ``chunk_size x num_items``; a
dense ``users x items`` matrix is never built."""
import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

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
    start = rowptr.index_select(0, rows)
    end = rowptr.index_select(0, rows + 1)
    count = end - start
    local = torch.repeat_interleave(torch.arange(rows.numel(),
                                                 device=rows.device), count)
    offset = torch.arange(int(count.sum()), device=rows.device)
    offset = offset - torch.repeat_interleave(torch.cumsum(count, 0) - count,
                                              count)
    return local, col.index_select(0,
                                   start.index_select(0, local) + offset)


def _mask_range(scores: Tensor, rows: Tensor, patterns: List[CSR], lo: int,
                hi: int):
    r"""Sets ``scores[b, c - lo]`` to :math:`-\infty` for every excluded
    ``c`` in ``[lo, hi)`` of row ``rows[b]`` (in place)."""
    for pattern in patterns:
        local, col = csr_rows(pattern, rows)
        keep = (col >= lo) & (col < hi)
        scores[local[keep], col[keep] - lo] = float('-inf')


def masked_topk(scores: Tensor, k: int, rows: Tensor,
                exclude: Exclude = None):
    r"""Top-``k`` ``(values, indices)`` of each row of ``scores`` (a
    ``[B, I]`` chunk for users ``rows``), never returning an excluded item.

    Excluded items are set to :math:`-\infty`; if a user has fewer than ``k``
    admissible items, the trailing slots hold excluded items with score
    :math:`-\infty` (``scores`` is modified in place). ``exclude`` is one
    CSR pattern or a list of them."""
    _mask_range(scores, rows, as_patterns(exclude), 0, scores.size(1))
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
        scores = user_emb.index_select(0, rows) @ item_emb.t()
        yield rows, masked_topk(scores, k, rows, exclude)


def _above(scores: Tensor, bound: Optional[Tensor],
           k: int) -> Tuple[Tensor, Tensor]:
    r"""``(values, columns)`` of each row's entries of ``scores`` at or
    above its ``bound``, padded with :math:`-\infty` to the longest row;
    the row's top-``k`` instead where some row has more than ``k`` (or
    where there is no ``bound``)."""
    num_rows, num_cols = scores.shape
    if bound is not None:
        keep = scores >= bound.view(-1, 1)
        # (A bool tensor's sum over a dim is ~8x slower than its bytes'.)
        count = keep.view(torch.uint8).sum(dim=1, dtype=torch.int32)
        width = int(count.max()) if num_rows > 0 else 0
    if bound is None or width > k:
        return scores.topk(min(k, num_cols), dim=1, sorted=False)
    flat = keep.view(-1).nonzero().view(-1)  # row-major positions
    row = flat // num_cols
    start = torch.cumsum(count, 0, dtype=torch.long) - count
    slot = torch.arange(flat.numel(), device=flat.device) - \
        start.index_select(0, row)
    dest = row * width + slot
    values = scores.new_full((num_rows * width, ), float('-inf'))
    values.index_copy_(0, dest, scores.view(-1).index_select(0, flat))
    index = flat.new_zeros(num_rows * width)
    index.index_copy_(0, dest, flat - row * num_cols)
    return values.view(num_rows, width), index.view(num_rows, width)


@torch.no_grad()
def pruned_topk(user_emb: Tensor, item_emb: Tensor, k: int,
                users: Optional[Tensor] = None, exclude: Exclude = None,
                chunk_size: int = 1024, prefix: float = 0.125,
                slack: float = 1e-4,
                sorted: bool = True) -> Tuple[Tensor, Tensor]:
    r"""Top-``k`` ``(values, indices)``, each ``[len(users), k]``, of
    :math:`\mathbf{e}_u^\top \mathbf{e}_i` for every user (or the given
    ``users``), excluded items never chosen: what :func:`topk_chunks` gives
    (up to the order of exact ties), without scoring most user-item pairs.

    By Cauchy-Schwarz, :math:`\mathbf{e}_u^\top \mathbf{e}_i \le
    \|\mathbf{e}_u\| \|\mathbf{e}_i\|`. Items are sorted by norm and
    every user is first scored against the :math:`n_0 = \lceil
    \text{prefix} \cdot I \rceil` largest-norm items. Its :math:`k`-th
    best admissible score there, :math:`\tau_u`, bounds its final one from
    below, so only the items with :math:`\|\mathbf{e}_i\| \ge \tau_u /
    \|\mathbf{e}_u\|`, the first :math:`n_u` in norm order, can enter its
    top-:math:`k`. Users are then taken in order of :math:`n_u`, each chunk
    scored against items :math:`n_0` to its largest :math:`n_u`. Users with
    :math:`\tau_u \le 0` (no bound) are scored against every item. The
    bound is loosened by the relative ``slack`` against rounding in the
    products. Of a chunk's new scores only those at or above
    :math:`\tau_u` can enter the user's top-:math:`k`; when no user in the
    chunk has more than :math:`k` of them, they are kept by one comparison
    and merged with phase 1's, rather than selected by ``topk`` (which
    costs several times the comparison per score on CPU). Products:
    between :math:`n_0 / I` and one times those of :func:`topk_chunks`,
    fewest when scores grow with the item norms (as MMSSL's modality
    embeddings do; with random features about those of the full ranking).
    Memory:
    ``chunk_size x I`` scores per chunk plus the ``[len(users), k]``
    output. If a user has fewer than ``k`` admissible items, its trailing
    slots hold :math:`-\infty`. With ``sorted=False`` each user's ``k``
    results come in no particular order (as :meth:`torch.Tensor.topk`,
    and faster)."""
    device = user_emb.device
    num_items = item_emb.size(0)
    if users is None:
        users = torch.arange(user_emb.size(0), device=device)
    k = min(k, num_items)
    item_norm, order = item_emb.norm(dim=1).sort(descending=True)
    item_sorted = item_emb.index_select(0, order)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_items, device=device)
    patterns = [(rowptr, rank[col]) for rowptr, col in as_patterns(exclude)]

    # Phase 1: the n0 largest-norm items, for every user.
    n0 = min(num_items, max(k, math.ceil(prefix * num_items)))
    values = user_emb.new_empty(users.numel(), k)
    index = torch.empty(users.numel(), k, dtype=torch.long, device=device)
    step = max(1, chunk_size * num_items // n0)  # chunk_size x I entries
    for start in range(0, users.numel(), step):
        rows = users[start:start + step]
        scores = user_emb.index_select(0, rows) @ item_sorted[:n0].t()
        _mask_range(scores, rows, patterns, 0, n0)
        values[start:start + step], index[start:start + step] = \
            scores.topk(k, dim=1, sorted=sorted)

    # n_u: how many items (in norm order) reach the user's bound.
    tau = values[:, -1] if sorted else values.min(dim=1).values
    bound = tau / user_emb.index_select(0, users).norm(dim=1) * (
        1 - slack)
    need = torch.searchsorted(-item_norm, -bound.contiguous(), right=True)
    need[~(tau > 0)] = num_items

    # Phase 2: items n0 .. the chunk's largest n_u, users by increasing n_u.
    rest = (need > n0).nonzero().view(-1)
    rest = rest[need[rest].argsort()]
    for start in range(0, rest.numel(), chunk_size):
        local = rest[start:start + chunk_size]
        hi = int(need.index_select(0, local).max())
        rows = users.index_select(0, local)
        scores = user_emb.index_select(0, rows) @ item_sorted[n0:hi].t()
        _mask_range(scores, rows, patterns, n0, hi)
        # A chunk that reaches the last item holds users whose bound rules
        # out little: no filter then.
        new_values, new_index = _above(
            scores, tau.index_select(0, local) if hi < num_items else None, k)
        top = torch.cat([values.index_select(0, local), new_values],
                        dim=1).topk(k, dim=1, sorted=sorted)  # with phase 1's
        values.index_copy_(0, local, top.values)
        index.index_copy_(0, local, torch.cat(
            [index.index_select(0, local), new_index + n0],
            dim=1).gather(1, top.indices))
    return values, order[index]
