import pytest
import torch

from pyg_mmssl.nn.dropout import Dropout, dropout


@pytest.mark.parametrize('p', [0.31, 0.5, 0.9])
def test_dropout_rate_and_scale(p, device):
    torch.manual_seed(0)
    x = torch.ones(1001, 999, device=device)  # odd number of elements
    out = dropout(x, p)
    dropped = (out == 0).double().mean().item()
    # 1M Bernoulli draws: standard deviation < 5e-4.
    assert abs(dropped - p) < 3e-3
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p),
                                                      device=device))


def test_dropout_rows_and_columns_independent():
    torch.manual_seed(1)
    out = dropout(torch.ones(2000, 2), 0.5)
    # The two int32 halves of one 64-bit draw are independent.
    same = (out[:, 0] == out[:, 1]).double().mean().item()
    assert abs(same - 0.5) < 0.05


def test_dropout_seeded_and_gradient(device):
    x = torch.randn(7, 9, dtype=torch.double, device=device,
                    requires_grad=True)
    torch.manual_seed(2)
    out = dropout(x, 0.3)
    torch.manual_seed(2)
    assert torch.equal(out, dropout(x, 0.3))
    out.sum().backward()
    assert torch.allclose(x.grad, out.detach() / x.detach())
    assert set(x.grad.unique().tolist()) == {0, 1 / 0.7}


def test_dropout_identity_and_edges():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match='dropout probability'):
        dropout(x, 1.5)
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert module.train()(torch.ones(100, 100)).eq(0).any()
    with pytest.raises(ValueError, match='in-place'):
        Dropout(0.5, inplace=True)
