import torch

from pyg_mmssl.nn.losses import gumbel_noise, gumbel_softmax_is_sparse


def test_gumbel_softmax_sparsity():
    assert gumbel_softmax_is_sparse(0.002, 1e-5)
    assert gumbel_softmax_is_sparse(0.005, 1e-5)
    assert not gumbel_softmax_is_sparse(0.05, 1e-5)
    assert not gumbel_softmax_is_sparse(0.002, 0.1)
    assert not gumbel_softmax_is_sparse(0.005, 1e-5, torch.double)
    # Where it says so, the dense softmax is exactly zero off the ones.
    torch.manual_seed(0)
    mask = (torch.rand(64, 500) < 0.02).float()
    mask[:, 0] = 1
    out = torch.softmax((mask + 1e-5 * gumbel_noise(mask.shape)) / 0.005, -1)
    assert torch.all(out[mask == 0] == 0)
