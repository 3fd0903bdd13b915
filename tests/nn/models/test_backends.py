import pytest
import torch

from pyg_mmssl.nn.adjacency import BACKENDS, available_backends
from pyg_mmssl.nn.models import BM3, FREEDOM, MMGCN, MMSSL, LightGCN

BATCH = ([0, 1, 2, 3, 1, 5], [2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13])
# model, its options, (atol, rtol) of the comparison
MODELS = {
    'bm3': (BM3, {}, (1e-6, 1e-5)),
    'freedom': (FREEDOM, dict(knn_k=4), (1e-6, 1e-5)),
    'lightgcn': (LightGCN, {}, (1e-6, 1e-5)),
    'mmgcn': (MMGCN, {}, (1e-6, 1e-5)),
    'mmssl': (MMSSL, dict(heads=4, topk_rate=0.1, g_rate=0.01, cl_rate=0.1),
              (1e-5, 1e-4)),
}


def one_step(model, device):
    r"""The loss terms of one training step (the critic's too) and the
    gradients of the recommender's parameters."""
    user, pos, neg = (torch.tensor(t, device=device) for t in BATCH)
    torch.manual_seed(1)  # the same dropout masks and Gumbel noise
    out = model()
    terms = {}
    if model.schedule().critic_steps:
        terms['d'] = model.critic_loss(user, out)
    terms.update(model.loss(user, pos, neg, out))
    terms['loss'].backward()
    critic = {id(p) for p in model.discriminator_parameters()}
    return terms, {n: p.grad for n, p in model.named_parameters()
                   if id(p) not in critic}


@pytest.mark.parametrize('name', sorted(MODELS))
@pytest.mark.parametrize('backend', BACKENDS)
def test_backends_agree(tiny_data, name, backend, device):
    if backend not in available_backends():
        pytest.skip(f"backend '{backend}' needs torch_sparse")
    cls, options, (atol, rtol) = MODELS[name]
    results = {}
    for b in ('scatter', backend):
        torch.manual_seed(0)
        model = cls.from_data(tiny_data, embedding_dim=8, backend=b,
                              **options).to(device)
        results[b] = one_step(model, device)
    (t1, g1), (t2, g2) = results['scatter'], results[backend]
    assert t1.keys() == t2.keys() and g1.keys() == g2.keys()
    for key in t1:
        assert torch.allclose(t1[key], t2[key], atol=atol, rtol=rtol), key
    for key in g1:
        assert g1[key] is not None, key
        assert torch.allclose(g1[key], g2[key], atol=atol, rtol=rtol), key
