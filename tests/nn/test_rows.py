import pytest
import torch
import torch.nn.functional as F

from pyg_mmssl.nn.rows import (masked_score_rows, rows_matmul_t,
                               sampled_products, sparse_matmul)

B, I, D = 6, 40, 5


@pytest.mark.parametrize('dense', [False, True])
def test_critic_rows_match_their_dense_form(dense, random_rows):
    gen = torch.Generator().manual_seed(0)
    rows = random_rows(gen, dense)
    x = rows.left @ rows.right.t()
    if dense:
        x = x + rows.dense
    x[rows.row, rows.col] += rows.value
    assert torch.allclose(rows.to_dense(), x)
    assert torch.allclose(rows.sq_norm(), x.pow(2).sum(-1))
    assert torch.allclose(rows.normalize().to_dense(), F.normalize(x, dim=-1))
    w = torch.randn(7, I, generator=gen, dtype=torch.double)
    assert torch.allclose(rows.matmul_t(w), x @ w.t())


def test_rows_matmul_t_of_mixed_row_sets(random_rows):
    # Row sets with and without a dense part, stacked in one product each.
    gen = torch.Generator().manual_seed(4)
    sets = [random_rows(gen, dense, grad=True)
            for dense in (False, True, False, True)]
    w = torch.randn(7, I, generator=gen, dtype=torch.double,
                    requires_grad=True)
    out = rows_matmul_t(sets, w)
    expected = torch.cat([r.to_dense() for r in sets]) @ w.t()
    assert torch.allclose(out, expected)
    grad = torch.randn_like(out)
    inputs = [w] + [t for r in sets for t in (r.left, r.right, r.value,
                                             r.dense) if t is not None]
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(expected, inputs, grad)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)


def test_masked_score_rows_is_the_generated_distribution(sparse_positions):
    gen = torch.Generator().manual_seed(1)
    row, col = sparse_positions(gen)
    p_u, p_i = torch.randn(B, D, dtype=torch.double), torch.randn(
        I, D, dtype=torch.double)
    mask = torch.zeros(B, I, dtype=torch.double)
    mask[row, col] = 1
    expected = F.normalize((p_u @ p_i.t()) * (1 - mask), dim=-1)
    out = masked_score_rows(p_u, p_i, row, col).normalize().to_dense()
    assert torch.allclose(out, expected)
    assert out[row, col].abs().max() < 1e-12


def test_sampled_products(device, sparse_positions):
    gen = torch.Generator().manual_seed(6)
    row, col = sparse_positions(gen)
    # Row-sorted, columns in any order within a row.
    perm = torch.randperm(row.numel(), generator=gen)
    perm = perm[row[perm].sort(stable=True).indices]
    row, col = row[perm].to(device), col[perm].to(device)
    assert not bool((col[1:] >= col[:-1])[row[1:] == row[:-1]].all())
    left = torch.randn(B, 4, dtype=torch.double, device=device,
                       requires_grad=True)
    right = torch.randn(I, 4, dtype=torch.double, device=device,
                        requires_grad=True)
    out = sampled_products(left, right, row, col)
    assert torch.allclose(out, (left @ right.t())[row, col])
    assert torch.autograd.gradcheck(
        lambda a, b: sampled_products(a, b, row, col), (left, right))


def test_sparse_matmul_gradients(device, sparse_positions):
    gen = torch.Generator().manual_seed(5)
    row, col = (t.to(device) for t in sparse_positions(gen))
    value = torch.randn(row.numel(), dtype=torch.double, device=device,
                        requires_grad=True)
    other = torch.randn(I, 3, dtype=torch.double, device=device,
                        requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, o: sparse_matmul(row, col, v, o, B), (value, other))
    empty = torch.empty(0, dtype=torch.long, device=device)
    out = sparse_matmul(empty, empty, value[:0], other, B)
    assert out.shape == (B, 3) and out.abs().sum() == 0

