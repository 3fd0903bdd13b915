import pytest
import torch

import pyg_mmssl.ranking
from pyg_mmssl.nn import knn_item_graph


def dense_reference(x: torch.Tensor, k: int, symmetrize: bool = False):
    r"""FREEDOM's construction, dense: cosine similarities, the top-``k``
    of each row (itself included), ``D^-1/2 A D^-1/2`` with ``D`` the row
    sums. Returns ``A_hat`` (rows are the items, columns their
    neighbours)."""
    x = x / x.norm(dim=1, keepdim=True)
    sim = x @ x.t()
    adj = torch.zeros_like(sim)
    adj.scatter_(1, sim.topk(k, dim=1).indices, 1.)
    if symmetrize:
        adj = torch.maximum(adj, adj.t())
    inv = adj.sum(1).rsqrt()
    return inv.view(-1, 1) * adj * inv.view(1, -1)


def to_dense(edge_index, weight, num_items):
    # Edges are (neighbour j, item i); entry (i, j) as FREEDOM's matrix.
    out = torch.zeros(num_items, num_items, dtype=weight.dtype)
    out[edge_index[1], edge_index[0]] = weight
    return out


@pytest.mark.parametrize('symmetrize', [False, True])
def test_matches_dense_reference(symmetrize, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 7, generator=gen, dtype=torch.double)
    edge_index, weight = knn_item_graph(x.to(device), 4, chunk_size=8,
                                        symmetrize=symmetrize)
    assert edge_index.device.type == device.type
    edge_index, weight = edge_index.cpu(), weight.cpu()
    out = to_dense(edge_index, weight, 30)
    ref = dense_reference(x, 4, symmetrize)
    # Random float64 features have no exact ties: the same neighbours.
    assert torch.equal(out > 0, ref > 0)
    assert torch.allclose(out, ref, atol=1e-12)
    assert out.diagonal().gt(0).all()  # an item is its own nearest
    if symmetrize:
        assert torch.equal(out, out.t())
    else:  # k neighbours per item, each weighing 1/k (FREEDOM's A / k)
        assert edge_index.size(1) == 30 * 4
        assert torch.allclose(weight, torch.full_like(weight, 1 / 4))
        assert torch.equal(torch.bincount(edge_index[1]),
                           torch.full((30, ), 4))
    # Sorted by (item, neighbour), no duplicates.
    key = edge_index[1] * 30 + edge_index[0]
    assert bool((key[1:] > key[:-1]).all())


def test_chunks_bound_memory_and_change_nothing(monkeypatch):
    x = torch.randn(50, 6)
    whole = knn_item_graph(x, 5, chunk_size=50)
    shapes = []
    masked_topk = pyg_mmssl.ranking.masked_topk

    def record(scores, *args, **kwargs):
        shapes.append(tuple(scores.shape))
        return masked_topk(scores, *args, **kwargs)

    monkeypatch.setattr(pyg_mmssl.ranking, 'masked_topk', record)
    chunked = knn_item_graph(x, 5, chunk_size=16)
    # The largest intermediate: one chunk_size x I block of similarities.
    assert shapes == [(16, 50)] * 3 + [(2, 50)]
    assert torch.equal(whole[0], chunked[0])
    assert torch.equal(whole[1], chunked[1])


def test_k_above_item_count_keeps_every_item():
    edge_index, weight = knn_item_graph(torch.randn(5, 3), 10)
    assert edge_index.size(1) == 25
    assert torch.allclose(weight, torch.full_like(weight, 1 / 5))


def test_zero_rows_are_finite():
    x = torch.randn(8, 3)
    x[2] = 0
    _, weight = knn_item_graph(x, 3)
    assert torch.isfinite(weight).all()


@pytest.mark.parametrize('kwargs,message', [
    (dict(k=0), "k must be at least 1, got 0"),
    (dict(k=3, chunk_size=0), "chunk_size must be at least 1, got 0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        knn_item_graph(torch.randn(4, 3), **kwargs)
