import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pyg_mmssl.data import to_csr
from pyg_mmssl import ranking
from pyg_mmssl.ranking import _above, pruned_topk, topk_chunks


def random_pattern(num_users, num_items, per_user, seed):
    gen = torch.Generator().manual_seed(seed)
    cols = torch.stack([torch.randperm(num_items, generator=gen)[:per_user]
                        for _ in range(num_users)])
    rows = torch.arange(num_users).repeat_interleave(per_user)
    return to_csr(torch.stack([rows, cols.view(-1)]), num_users, num_items)


def reference(user_emb, item_emb, k, users, exclude):
    tops = [top for _, top in topk_chunks(user_emb, item_emb, k, users,
                                          exclude, chunk_size=7)]
    return (torch.cat([t.values for t in tops]),
            torch.cat([t.indices for t in tops]))


def hard_case(dtype=torch.float64):
    r"""Three dimensions (so high cosines are common and items near the
    norm bound do enter the top-k) and item norms spread over two orders of
    magnitude, plus users the bound cannot help: one whose admissible
    scores are all negative, one of norm zero, one whose largest-norm items
    are all excluded, and one with fewer than ``k`` admissible items."""
    U, I, d = 40, 300, 3
    user_emb = torch.randn(U, d, dtype=dtype)
    item_emb = torch.randn(I, d, dtype=dtype) * torch.logspace(
        -1, 1, I, dtype=dtype).view(-1, 1)[torch.randperm(I)]
    user_emb[1] = 0
    train = random_pattern(U, I, 5, seed=0)
    top_norm = item_emb.norm(dim=1).argsort(descending=True)
    extra = {0: (item_emb @ user_emb[0] > 0).nonzero().view(-1),
             2: top_norm[:60], 3: torch.arange(I)[3:]}
    rows = torch.cat([torch.full_like(c, u) for u, c in extra.items()])
    cols = torch.cat(list(extra.values()))
    return user_emb, item_emb, [train, to_csr(torch.stack([rows, cols]), U,
                                              I)]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('subset', [False, True])
def test_pruned_topk_equals_full_ranking(dtype, subset, device):
    user_emb, item_emb, exclude = hard_case(dtype)
    user_emb, item_emb = user_emb.to(device), item_emb.to(device)
    exclude = [tuple(t.to(device) for t in p) for p in exclude]
    k = 10
    users = torch.tensor([3, 0, 5, 1, 2, 17, 39],
                         device=device) if subset else None
    values, index = pruned_topk(user_emb, item_emb, k, users, exclude,
                                chunk_size=6)
    ref_values, ref_index = reference(user_emb, item_emb, k, users, exclude)
    # Pruning scores a subset of items, through another matrix product
    # (another summation order on CUDA): float32 scores agree to rounding.
    tol = dict(rtol=1e-6, atol=0 if dtype == torch.float64 else 1e-6)
    torch.testing.assert_close(values, ref_values, **tol)
    finite = torch.isfinite(ref_values)
    assert not finite.all()  # user 3 has fewer than k admissible items
    assert torch.equal(torch.isfinite(values), finite)
    # Random scores have no ties, except user 1's (all zero): the same
    # items, in the same order.
    users = torch.arange(40, device=device) if users is None else users
    untied = finite & (users != 1).view(-1, 1)
    assert torch.equal(index[untied], ref_index[untied])
    # Unordered: the same (value, item) pairs per user.
    values_u, index_u = pruned_topk(user_emb, item_emb, k, users, exclude,
                                    chunk_size=6, sorted=False)
    order = values_u.argsort(dim=1, descending=True, stable=True)
    torch.testing.assert_close(values_u.gather(1, order), ref_values, **tol)
    items = index_u.gather(1, order)
    assert torch.equal(items[untied], ref_index[untied])


def test_pruned_topk_never_returns_excluded_items():
    user_emb, item_emb, exclude = hard_case()
    _, index = pruned_topk(user_emb, item_emb, 10, exclude=exclude)
    for rowptr, col in exclude:
        for u in (0, 1, 2, 4):
            banned = set(col[rowptr[u]:rowptr[u + 1]].tolist())
            assert not banned & set(index[u].tolist())


def mm_flops(fn):
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return sum(e.flops for e in prof.key_averages() if e.key == 'aten::mm')


def test_pruned_topk_scores_fewer_pairs():
    # Scores that grow with item norm: the bound rules most items out.
    U, I, d, k = 64, 2000, 16, 20
    user_emb = torch.rand(U, d) + 1
    item_emb = (torch.rand(I, d) + 1) * torch.rand(I, 1)
    full = mm_flops(lambda: reference(user_emb, item_emb, k, None, None))
    pruned = mm_flops(lambda: pruned_topk(user_emb, item_emb, k))
    assert full == 2 * U * I * d
    assert pruned < 0.25 * full
    # Without a bound (every score negative) it scores every pair once.
    worst = mm_flops(lambda: pruned_topk(-user_emb, item_emb, k))
    assert worst == full


def entries(values, index):
    return [sorted((v, c) for v, c in zip(vr.tolist(), ir.tolist())
                   if v != float('-inf')) for vr, ir in zip(values, index)]


def test_above_keeps_entries_at_or_above_the_bound():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 30, generator=gen, dtype=torch.float64)
    scores[2, 5] = float('-inf')  # an excluded item
    # 4 entries per row, the 4th equal to the bound (kept: at or above)
    bound = scores.topk(4, dim=1).values[:, -1]
    bound[1] = scores[1].max() + 1  # none
    values, index = _above(scores, bound, k=4)
    assert values.shape == index.shape == (6, 4)
    assert entries(values, index) == [
        sorted((v, c) for c, v in enumerate(row.tolist()) if v >= b)
        for row, b in zip(scores, bound.tolist())]
    assert entries(values, index)[1] == []
    # A row with more than k entries: each row's top-k instead.
    bound[0] = scores[0].min()
    values, index = _above(scores, bound, k=4)
    ref = scores.topk(4, dim=1)
    assert entries(values, index) == entries(ref.values, ref.indices)
    # No bound, no rows, and no entry above any bound.
    values, index = _above(scores, None, k=4)
    assert entries(values, index) == entries(ref.values, ref.indices)
    values, index = _above(scores[:0], bound[:0], k=4)
    assert values.shape == (0, 0)
    values, index = _above(scores, scores.max(1).values + 1, k=4)
    assert values.shape == (6, 0)


def test_pruned_topk_takes_both_selection_paths(monkeypatch):
    # The hard case's second phase has chunks where every user has at most
    # k candidates above its phase-one bound (compacted) and chunks where
    # some user has more (top-k); both give the full ranking's scores.
    widths = []

    def spy(scores, bound, k):
        if bound is not None:  # None: a chunk that reaches the last item
            keep = scores >= bound.view(-1, 1)
            widths.append((int(keep.sum(1).max()), k))
        return _above(scores, bound, k)

    monkeypatch.setattr(ranking, '_above', spy)
    user_emb, item_emb, exclude = hard_case()
    values, _ = pruned_topk(user_emb, item_emb, 10, None, exclude,
                            chunk_size=6)
    ref_values, _ = reference(user_emb, item_emb, 10, None, exclude)
    torch.testing.assert_close(values, ref_values, rtol=1e-6, atol=0)
    assert any(w <= k for w, k in widths)
    assert any(w > k for w, k in widths)
