import pytest
import torch
import torch.nn.functional as F

from pyg_mmssl.nn.discriminator import (CriticRows, Discriminator, InputLayer,
                                        gumbel_noise, gumbel_softmax_is_sparse,
                                        input_grad_sq_norm, masked_score_rows,
                                        rows_matmul_t, sampled_products,
                                        sparse_matmul)

B, I, D = 6, 40, 5


def sparse_positions(gen):
    # Distinct (row, col) positions, at least one per row.
    mask = torch.rand(B, I, generator=gen) < 0.15
    mask[torch.arange(B), torch.randint(0, I, (B, ), generator=gen)] = True
    row, col = mask.nonzero().t()
    return row, col


def random_rows(gen, dense=False, grad=False):
    row, col = sparse_positions(gen)
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


@pytest.mark.parametrize('dense', [False, True])
def test_critic_rows_match_their_dense_form(dense):
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


def test_rows_matmul_t_of_mixed_row_sets():
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


def test_masked_score_rows_is_the_generated_distribution():
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


@pytest.mark.parametrize('num_rows,width', [(3, 30), (30, 3)])
def test_input_grad_sq_norm_branches_agree(num_rows, width):
    # (3, 30): per-row products; (30, 3): Gram matrix.
    delta = torch.randn(num_rows, width, dtype=torch.double)
    weight = torch.randn(width, I, dtype=torch.double)
    expected = (delta @ weight).pow(2).sum(-1)
    assert torch.allclose(input_grad_sq_norm(delta, weight), expected)


def to_device(rows, device):
    return CriticRows(*(None if t is None else t.to(device) for t in rows))


def critic_pair(seed=0, device='cpu'):
    torch.manual_seed(seed)
    dense = Discriminator(I, 'dense').double().to(device)
    exact = Discriminator(I, 'exact').double().to(device)
    exact.load_state_dict(dense.state_dict())
    return dense, exact


@pytest.mark.parametrize('dense_real', [False, True])
def test_exact_critic_matches_dense(dense_real, device,
                                    assert_critic_gradient):
    gen = torch.Generator().manual_seed(2)
    real = to_device(random_rows(gen, dense_real), device).normalize()
    fake = [to_device(random_rows(gen, grad=True), device).normalize()
            for _ in range(2)]
    dense, exact = critic_pair(device=device)
    out = {}
    for name, critic, r, f in (
            ('dense', dense, real.to_dense(),
             torch.cat([x.to_dense() for x in fake])),
            ('exact', exact, real, fake)):
        torch.manual_seed(3)  # same dropout masks and interpolates
        d_loss = critic.loss(r, f, gp_weight=0.3)
        critic.zero_grad()
        d_loss.backward()
        grads = {n: p.grad.clone() for n, p in critic.named_parameters()}
        stats = {n: b.clone() for n, b in critic.named_buffers()}
        with critic.frozen():
            adv = -critic(f).mean()
        gen_grads = torch.autograd.grad(
            adv, [t for x in fake for t in (x.left, x.right, x.value)],
            retain_graph=True)
        assert all(p.grad is None or torch.equal(p.grad, grads[n])
                   for n, p in critic.named_parameters())  # frozen
        out[name] = (d_loss, grads, stats, adv, gen_grads)
    (d1, g1, s1, a1, gg1), (d2, g2, s2, a2, gg2) = out['dense'], out['exact']
    assert torch.allclose(d1, d2, atol=1e-10)
    assert torch.allclose(a1, a2, atol=1e-10)
    for n in g1:
        assert_critic_gradient(dense, n, g1[n])
        assert torch.allclose(g1[n], g2[n], atol=1e-9), n
    for n in s1:
        assert torch.allclose(s1[n].double(), s2[n].double()), n
    for a, b in zip(gg1, gg2):
        assert torch.allclose(a, b, atol=1e-10)


def test_input_layer_layout_and_linear_compat():
    torch.manual_seed(3)
    linear = torch.nn.Linear(I, 7, bias=False)
    torch.manual_seed(3)
    layer = InputLayer(I, 7)
    assert layer.weight_t.shape == (I, 7) and layer.weight_t.is_contiguous()
    assert torch.equal(layer.weight, linear.weight)  # same initial values
    x = torch.randn(3, I)
    assert torch.allclose(layer(x), linear(x))
    # A checkpoint of the torch.nn.Linear layout loads.
    other = InputLayer(I, 7)
    other.load_state_dict(linear.state_dict())
    assert torch.equal(other.weight, linear.weight)
    assert other.weight_t.is_contiguous()
    assert repr(layer) == f'InputLayer({I}, 7)'


def test_lowrank_critic_reads_critic_rows(device, assert_critic_gradient):
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(0)
    critic = Discriminator(I, 'lowrank', rank=4).double().to(device)
    assert critic.input.weight.shape == (4, I)
    real = to_device(random_rows(gen), device).normalize()
    fake = [to_device(random_rows(gen), device).normalize() for _ in range(2)]
    loss = critic.loss(real, fake)
    loss.backward()
    for n, p in critic.named_parameters():
        assert_critic_gradient(critic, n, p.grad)
    critic.eval()
    assert torch.allclose(critic(real), critic(real.to_dense()))


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


@pytest.mark.parametrize('num_rows,width', [(3, 30), (30, 3)])
def test_input_grad_sq_norm_gradients(num_rows, width, device):
    delta = torch.randn(num_rows, width, dtype=torch.double, device=device,
                        requires_grad=True)
    weight = torch.randn(width, I, dtype=torch.double, device=device,
                         requires_grad=True)
    assert torch.autograd.gradcheck(input_grad_sq_norm, (delta, weight))


def test_sampled_products(device):
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


def test_sparse_matmul_gradients(device):
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
