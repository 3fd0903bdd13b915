import pytest
import torch
import torch_geometric.typing
from torch_geometric import EdgeIndex
from torch_geometric.nn import to_hetero
from torch_geometric.typing import SparseTensor

from pyg_mmssl.nn.conv import MMSSLConv, bipartite_norm


def random_bipartite(num_src=7, num_dst=5, num_edges=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    key = torch.randperm(num_src * num_dst, generator=g)[:num_edges]
    return torch.stack([key // num_dst, key % num_dst])


def dense_reference(edge_index, x_src, num_dst, normalize, weight=None):
    A = torch.zeros(x_src.size(0), num_dst)
    A[edge_index[0], edge_index[1]] = 1. if weight is None else weight
    if normalize == 'sym':
        ds, dd = A.sum(1), A.sum(0)
        A = A / (ds.clamp(min=1e-12).sqrt().view(-1, 1) *
                 dd.clamp(min=1e-12).sqrt().view(1, -1))
    elif normalize == 'mean':
        A = A / A.sum(0).clamp(min=1e-12).view(1, -1)
    return A.t() @ x_src


@pytest.mark.parametrize('normalize', ['sym', 'mean', 'none'])
def test_normalisations_match_dense_maths(normalize):
    ei = random_bipartite()
    x_src, x_dst = torch.randn(7, 4), torch.randn(5, 4)
    weight = torch.rand(ei.size(1), requires_grad=True)
    conv = MMSSLConv(normalize=normalize)
    assert str(conv) == f'MMSSLConv(normalize={normalize})'
    out = conv((x_src, x_dst), ei, weight)
    assert out.shape == (5, 4)
    ref = dense_reference(ei, x_src, 5, normalize, weight)
    assert torch.allclose(out, ref, atol=1e-6)
    # Trainable edge weights: the gradient also flows through the degrees.
    coef = torch.randn(5, 4)
    grad, = torch.autograd.grad((out * coef).sum(), weight)
    ref_grad, = torch.autograd.grad((ref * coef).sum(), weight)
    assert torch.allclose(grad, ref_grad, atol=1e-6)


@pytest.mark.parametrize('normalize', ['sym', 'mean', 'none'])
@pytest.mark.parametrize('weighted', [False, True])
def test_bipartite_norm_values_and_weight_gradients(normalize, weighted):
    ei = random_bipartite()
    weight = (torch.rand(ei.size(1), dtype=torch.double) + 0.5
              ).requires_grad_() if weighted else None
    out = bipartite_norm(ei, (7, 5), weight, normalize, torch.double)
    assert out.dtype == torch.double
    w = torch.ones(ei.size(1), dtype=torch.double) if weight is None \
        else weight
    d_src = torch.zeros(7, dtype=torch.double).index_add(0, ei[0], w)
    d_dst = torch.zeros(5, dtype=torch.double).index_add(0, ei[1], w)
    expected = {'sym': w / (d_src[ei[0]] * d_dst[ei[1]]).sqrt(),
                'mean': w / d_dst[ei[1]], 'none': w}[normalize]
    assert torch.allclose(out, expected)
    if weighted:  # the degrees depend on the weights too
        coef = torch.randn(ei.size(1), dtype=torch.double)
        grad, = torch.autograd.grad((out * coef).sum(), weight)
        ref, = torch.autograd.grad((expected * coef).sum(), weight)
        assert torch.allclose(grad, ref)


def test_homogeneous_call_and_cache():
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    x = torch.randn(3, 8)
    conv = MMSSLConv(cached=True)
    out = conv(x, ei)
    assert out.shape == (3, 8)
    # The cached normalisation is reused even for another edge_index.
    assert torch.allclose(conv(x, ei.flip(0)[:, :1]), out)
    conv.reset_parameters()
    assert not torch.allclose(conv(x, ei[:, :1]), out)
    with pytest.raises(ValueError, match="unknown normalisation"):
        MMSSLConv(normalize='rw')


def adjacencies(ei, size):
    """Every adjacency type PyG users have, for messages src -> dst."""
    out = {'edge_index': ei,
           'EdgeIndex': EdgeIndex(ei, sparse_size=size).sort_by('col')[0]}
    adj_t = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)),
                                    (size[1], size[0])).coalesce()
    out['torch.sparse_csr'] = adj_t.to_sparse_csr()
    if torch_geometric.typing.WITH_TORCH_SPARSE:
        out['SparseTensor'] = SparseTensor(row=ei[1], col=ei[0],
                                           sparse_sizes=(size[1], size[0]))
    return out


def test_sparse_tensor_is_covered():
    if not torch_geometric.typing.WITH_TORCH_SPARSE:
        pytest.skip("torch_sparse not installed: SparseTensor not compared")
    assert 'SparseTensor' in adjacencies(random_bipartite(), (7, 5))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_all_adjacency_types_agree(seed):
    ei = random_bipartite(30, 20, 90, seed)
    outs, grads = {}, {}
    for name, adj in adjacencies(ei, (30, 20)).items():
        torch.manual_seed(seed)
        x = torch.randn(30, 16, requires_grad=True)
        out = MMSSLConv()((x, None), adj, size=(30, 20))
        (out * torch.linspace(0, 1, 16)).sum().backward()
        outs[name], grads[name] = out, x.grad
    for name in outs:
        assert torch.allclose(outs[name], outs['edge_index'], atol=1e-5), name
        assert torch.allclose(grads[name], grads['edge_index'], atol=1e-5), \
            name


def test_bipartite_norm_isolated_nodes():
    ei = torch.tensor([[0, 0], [0, 1]])
    w = bipartite_norm(ei, (3, 3))
    assert torch.allclose(w, torch.full((2, ), 2 ** -0.5))
    with pytest.raises(ValueError, match="unknown normalisation"):
        bipartite_norm(ei, (3, 3), normalize='x')


def test_to_hetero():
    class GNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MMSSLConv()

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    ei = random_bipartite(6, 4, 10)
    x_dict = {'user': torch.randn(6, 8), 'item': torch.randn(4, 8)}
    edge_index_dict = {('user', 'interacts', 'item'): ei,
                       ('item', 'rev_interacts', 'user'): ei.flip(0)}
    metadata = (list(x_dict), list(edge_index_dict))
    model = to_hetero(GNN(), metadata, aggr='sum')
    out = model(x_dict, edge_index_dict)
    assert torch.allclose(out['item'],
                          dense_reference(ei, x_dict['user'], 4, 'sym'),
                          atol=1e-6)
    assert torch.allclose(out['user'],
                          dense_reference(ei.flip(0), x_dict['item'], 6,
                                          'sym'), atol=1e-6)


def test_torch_compile_without_graph_breaks():
    ei = random_bipartite(12, 9, 30)
    weight = bipartite_norm(ei, (12, 9))
    conv = MMSSLConv(normalize='none')
    x = torch.randn(12, 8)
    expected = conv((x, None), ei, weight, size=(12, 9))
    explain = torch._dynamo.explain(conv)((x, None), ei, weight, (12, 9))
    assert explain.graph_break_count == 0
    compiled = torch.compile(conv, backend='aot_eager', fullgraph=True)
    assert torch.allclose(compiled((x, None), ei, weight, size=(12, 9)),
                          expected, atol=1e-6)
