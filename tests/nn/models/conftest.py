import pytest
import torch


def _dense_sym(edge_index, num_users, num_items):
    r"""The dense float64, symmetrically normalised (U + I) x (U + I)
    adjacency of (user, item) pairs."""
    n = num_users + num_items
    adj = torch.zeros(n, n, dtype=torch.double)
    adj[edge_index[0], num_users + edge_index[1]] = 1
    adj = adj + adj.t()
    deg = adj.sum(1)
    inv = deg.rsqrt().masked_fill(deg == 0, 0)
    return inv.view(-1, 1) * adj * inv.view(1, -1)


@pytest.fixture
def dense_sym():
    return _dense_sym
