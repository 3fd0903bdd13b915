import torch

from pyg_mmssl.nn.conv import MMGCNConv


def test_mmgcn_conv_is_linear_then_mean():
    torch.manual_seed(0)
    ei = torch.tensor([[0, 1, 2, 2], [0, 0, 1, 2]])  # src -> dst
    x = torch.randn(3, 6)
    conv = MMGCNConv(6, 4)
    assert str(conv) == 'MMGCNConv(6, 4, normalize=mean)'
    out = conv(x, ei)
    h = conv.lin(x)
    expected = torch.stack([(h[0] + h[1]) / 2, h[2], h[2]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_mmgcn_conv_bipartite_and_sparse():
    torch.manual_seed(0)
    ei = torch.tensor([[0, 1, 3, 3], [1, 0, 1, 2]])
    x_src, x_dst = torch.randn(4, 5), torch.randn(3, 5)
    conv = MMGCNConv(5, 2, normalize='sym')
    out = conv((x_src, x_dst), ei)
    assert out.shape == (3, 2)
    adj_t = torch.sparse_coo_tensor(ei.flip(0), torch.ones(4),
                                    (3, 4)).to_sparse_csr()
    assert torch.allclose(conv((x_src, x_dst), adj_t), out, atol=1e-6)
