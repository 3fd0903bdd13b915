import pytest
import torch

from pyg_mmssl.nn.discriminator import (Discriminator, InputLayer,
                                        input_grad_sq_norm)
from pyg_mmssl.nn.rows import CriticRows

B, I, D = 6, 40, 5


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
def test_exact_critic_matches_dense(dense_real, device, random_rows,
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


def test_input_layer_layout_matches_linear():
    torch.manual_seed(3)
    linear = torch.nn.Linear(I, 7, bias=False)
    torch.manual_seed(3)
    layer = InputLayer(I, 7)
    assert layer.weight_t.shape == (I, 7) and layer.weight_t.is_contiguous()
    assert torch.equal(layer.weight, linear.weight)  # same initial values
    x = torch.randn(3, I)
    assert torch.allclose(layer(x), linear(x))
    assert repr(layer) == f'InputLayer({I}, 7)'


def test_lowrank_critic_reads_critic_rows(device, random_rows,
                                          assert_critic_gradient):
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


@pytest.mark.parametrize('num_rows,width', [(3, 30), (30, 3)])
def test_input_grad_sq_norm_gradients(num_rows, width, device):
    delta = torch.randn(num_rows, width, dtype=torch.double, device=device,
                        requires_grad=True)
    weight = torch.randn(width, I, dtype=torch.double, device=device,
                         requires_grad=True)
    assert torch.autograd.gradcheck(input_grad_sq_norm, (delta, weight))

@pytest.mark.parametrize('critic', ['dense', 'exact'])
def test_critic_reads_row_sources_in_its_form(critic, random_rows):
    from pyg_mmssl.nn.rows import RowSource
    gen = torch.Generator().manual_seed(7)
    real = random_rows(gen).normalize()
    fake = [random_rows(gen).normalize() for _ in range(2)]
    asked = []

    def source(rows):
        return RowSource(lambda: asked.append('dense') or rows.to_dense(),
                         lambda: asked.append('factorised') or rows)

    torch.manual_seed(0)
    d = Discriminator(I, critic).double()
    form = 'dense' if critic == 'dense' else 'factorised'
    as_read = (real.to_dense(), torch.cat([f.to_dense() for f in fake])) \
        if critic == 'dense' else (real, fake)
    torch.manual_seed(1)
    expected = d.loss(*as_read)
    torch.manual_seed(1)
    got = d.loss(source(real), [source(f) for f in fake])
    assert torch.allclose(got, expected)
    assert set(asked) == {form} and len(asked) == 3
    assert d.read(as_read[0]) is as_read[0]  # already in its form
