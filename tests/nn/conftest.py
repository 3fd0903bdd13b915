import pytest
import torch

from pyg_mmssl.nn.rows import CriticRows

B, I, D = 6, 40, 5


def _sparse_positions(gen):
    # Distinct (row, col) positions, at least one per row.
    mask = torch.rand(B, I, generator=gen) < 0.15
    mask[torch.arange(B), torch.randint(0, I, (B, ), generator=gen)] = True
    row, col = mask.nonzero().t()
    return row, col


def _random_rows(gen, dense=False, grad=False):
    row, col = _sparse_positions(gen)
    rows = CriticRows(
        torch.randn(B, D, generator=gen, dtype=torch.double),
        torch.randn(I, D, generator=gen, dtype=torch.double), row, col,
        torch.randn(row.numel(), generator=gen, dtype=torch.double),
        torch.randn(B, I, generator=gen, dtype=torch.double)
        if dense else None)
    if grad:
        rows = CriticRows(*(t.requires_grad_() if t is not None and
                            t.is_floating_point() else t for t in rows))
    return rows


@pytest.fixture
def sparse_positions():
    r"""Distinct ``(row, col)`` positions in a ``B x I`` matrix, at least one
    per row, drawn from a generator."""
    return _sparse_positions


@pytest.fixture
def random_rows():
    r"""Random float64 :class:`CriticRows` (``B`` rows over ``I`` items),
    optionally with a dense part and requiring gradients."""
    return _random_rows
