import pytest
import torch
from torch_geometric.utils import spmm as pyg_spmm

from pyg_mmssl.nn.adjacency import BipartiteGraph, available_backends
from pyg_mmssl.nn.conv import MMSSLConv
from pyg_mmssl.nn.spmm import (_ATTR, cache_transpose, sort_entries, spmm,
                               transposed_csr)

SPARSE = [b for b in ('csr', 'sparse_tensor') if b in available_backends()]


def random_pairs(num_users=13, num_items=9, num_edges=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(num_users * num_items, generator=g)[:num_edges]
    return torch.stack([pairs // num_items, pairs % num_items])  # unsorted


def propagate_both(graph, x_user, x_item):
    conv = MMSSLConv(normalize='none')
    p, q = graph.item_to_user, graph.user_to_item
    return (conv((x_item, None), p.adj, p.edge_weight, size=p.size),
            conv((x_user, None), q.adj, q.edge_weight, size=q.size))


@pytest.mark.parametrize('backend', SPARSE)
@pytest.mark.parametrize('normalize', ['sym', 'mean', 'none'])
def test_cached_transpose_matches_scatter(backend, normalize):
    ei = random_pairs()
    weight = torch.rand(ei.size(1)) + 0.5
    results = {}
    for name in ('scatter', backend):
        graph = BipartiteGraph.build(ei, 13, 9, weight, normalize, name)
        torch.manual_seed(0)
        x_user = torch.randn(13, 4, requires_grad=True)
        x_item = torch.randn(9, 4, requires_grad=True)
        out_u, out_i = propagate_both(graph, x_user, x_item)
        (out_u.pow(2).sum() + (out_i * torch.arange(4.)).sum()).backward()
        results[name] = (out_u, out_i, x_user.grad, x_item.grad)
    for p in (graph.item_to_user, graph.user_to_item):
        assert getattr(p.adj, _ATTR, None) is not None  # fast path used
    for ref, got in zip(results['scatter'], results[backend]):
        assert torch.allclose(ref, got, atol=1e-6)


@pytest.mark.parametrize('num_major,num_minor', [(9, 13), (40_000, 5),
                                                 (70_000, 70_000)])
@pytest.mark.parametrize('order', ['shuffled', 'by_minor', 'sorted'])
def test_sort_entries(num_major, num_minor, order):
    # int16, int32 and (key over 2^31) int64 sorts; the stable path when
    # entries come sorted by minor (transposing a row-sorted matrix).
    g = torch.Generator().manual_seed(0)
    major = torch.randint(num_major, (300, ), generator=g)
    minor = torch.randint(num_minor, (300, ), generator=g)
    key = torch.unique(major * num_minor + minor)  # distinct, sorted
    if order == 'shuffled':
        key = key[torch.randperm(key.numel(), generator=g)]
    elif order == 'by_minor':
        key = key[torch.argsort(key % num_minor * num_major + key // num_minor)]
    major, minor = key // num_minor, key % num_minor
    value = torch.randn(key.numel(), generator=g)
    out = sort_entries(major, minor, value, num_major, num_minor)
    perm = torch.argsort(major * num_minor + minor)
    for got, ref in zip(out, (major[perm], minor[perm], value[perm])):
        assert got.dtype == ref.dtype
        assert torch.equal(got, ref)
    if order == 'sorted':  # nothing copied
        assert all(a is b for a, b in zip(out, (major, minor, value)))


def test_transposed_csr_matches_dense():
    g = torch.Generator().manual_seed(1)
    dense = torch.rand(6, 11, generator=g) * (torch.rand(6, 11, generator=g)
                                              < 0.4)
    row, col = dense.nonzero().t()  # row-sorted: the stable path
    csr = transposed_csr(row, col, dense[row, col], 6, 11)
    assert torch.equal(csr.to_dense(), dense.t())
    perm = torch.randperm(row.numel(), generator=g)  # the general path
    row, col = row[perm], col[perm]
    csr = transposed_csr(row, col, dense[row, col], 6, 11)
    assert torch.equal(csr.to_dense(), dense.t())


@pytest.mark.parametrize('backend', ['scatter', 'edge_index', *SPARSE])
def test_user_sorted_graph_matches_dense(backend):
    # Learned graphs arrive sorted by user: their user-to-item direction
    # takes the stable single-key sort.
    g = torch.Generator().manual_seed(2)
    items = torch.rand(13, 9, generator=g).topk(3, dim=1).indices
    ei = torch.stack([torch.arange(13).repeat_interleave(3),
                      items.sort(dim=1).values.view(-1)])
    graph = BipartiteGraph.build(ei, 13, 9, backend=backend)
    A = torch.zeros(13, 9)
    A[ei[0], ei[1]] = 1.
    A = A / (A.sum(1, keepdim=True).sqrt() *
             A.sum(0, keepdim=True).clamp(min=1).sqrt())
    x_user, x_item = torch.randn(13, 4), torch.randn(9, 4)
    out_u, out_i = propagate_both(graph, x_user, x_item)
    assert torch.allclose(out_u, A @ x_item, atol=1e-6)
    assert torch.allclose(out_i, A.t() @ x_user, atol=1e-6)


def test_cached_spmm_falls_back_for_trainable_values():
    ei = random_pairs()
    value = torch.rand(ei.size(1), requires_grad=True)
    adj_t = torch.sparse_coo_tensor(ei.flip(0), value, (9, 13)).coalesce()
    adj_t = cache_transpose(adj_t.to_sparse_csr())
    x = torch.randn(13, 3)
    out = spmm(adj_t, x)
    assert torch.allclose(out, pyg_spmm(adj_t.detach(), x), atol=1e-6)
    out.sum().backward()  # through PyG's path: the values get a gradient
    assert value.grad is not None and value.grad.abs().sum() > 0


def test_cached_spmm_is_once_differentiable():
    graph = BipartiteGraph.build(random_pairs(), 13, 9, backend='csr')
    x = torch.randn(9, 3, requires_grad=True)
    p = graph.item_to_user
    out = MMSSLConv(normalize='none')((x, None), p.adj, size=p.size)
    (grad, ) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
