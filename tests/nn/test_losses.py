import math

import torch

from pyg_mmssl.nn.losses import (gumbel_noise, gumbel_softmax_is_sparse,
                                 info_nce)


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


def test_info_nce_against_the_formula_written_out():
    torch.manual_seed(0)
    z1 = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    tau = 0.3

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    a, b = z1.detach(), z2.detach()
    expected = 0.
    for i in range(5):
        den = sum(math.exp(cos(a[i], b[j]) / tau) for j in range(5)) + sum(
            math.exp(cos(a[i], a[j]) / tau) for j in range(5) if j != i)
        expected -= math.log(math.exp(cos(a[i], b[i]) / tau) / den) / 5
    loss = info_nce(z1, z2, tau)
    assert abs(float(loss.detach()) - expected) < 1e-12
    # Gradients through the in-place masking match autograd's on an
    # out-of-place form.
    g = torch.autograd.grad(loss, (z1, z2))
    n1 = torch.nn.functional.normalize(z1, dim=-1)
    n2 = torch.nn.functional.normalize(z2, dim=-1)
    within = (n1 @ n1.t() / tau).masked_fill(torch.eye(5, dtype=torch.bool),
                                             float('-inf'))
    logits = torch.cat([n1 @ n2.t() / tau, within], 1)
    ref = (torch.logsumexp(logits, 1) - (n1 @ n2.t() / tau).diagonal())
    g_ref = torch.autograd.grad(ref.mean(), (z1, z2))
    for x, y in zip(g, g_ref):
        assert torch.allclose(x, y, atol=1e-12)
