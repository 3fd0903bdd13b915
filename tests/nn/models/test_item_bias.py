import pytest
import torch
import torch.nn.functional as F

from pyg_mmssl.nn.models import LightGCN, MMSSL

# Models with the item_bias option, and small settings for each.
MODELS = {
    'lightgcn': (LightGCN, dict(embedding_dim=8)),
    'mmssl': (MMSSL, dict(embedding_dim=16, heads=4, adversarial=False)),
}
USER, POS, NEG = (torch.tensor([0, 1, 2, 3, 1, 5]),
                  torch.tensor([2, 3, 4, 5, 6, 7]),
                  torch.tensor([8, 9, 10, 11, 12, 13]))


def build(tiny_data, name, **options):
    torch.manual_seed(0)
    cls, small = MODELS[name]
    return cls.from_data(tiny_data, **small, **options)


@pytest.mark.parametrize('name', MODELS)
def test_popularity_prior_is_the_centred_log_count(tiny_data, name):
    model = build(tiny_data, name, item_bias='popularity',
                  item_bias_scale=0.3)
    count = torch.zeros(model.num_items)
    for i in model.train_edge_index[1].tolist():  # counted one by one
        count[i] += 1
    prior = torch.log(1 + count)
    expected = 0.3 * (prior - prior.mean())
    assert torch.allclose(model.item_bias.detach(), expected, atol=1e-6)
    with torch.no_grad():
        model.item_bias.fill_(5.)
    model.reset_parameters()  # back to the prior
    assert torch.allclose(model.item_bias.detach(), expected, atol=1e-6)
    assert build(tiny_data, name, item_bias='zero').item_bias.abs().sum() == 0
    assert build(tiny_data, name).item_bias is None


@pytest.mark.parametrize('name', MODELS)
def test_item_bias_enters_scores_and_loss(tiny_data, name):
    plain = build(tiny_data, name).eval()
    model = build(tiny_data, name, item_bias='popularity').eval()
    emb, base = model.get_embedding(), plain.get_embedding()
    # The same embeddings (same seed), plus b_i in every score.
    scores = base.user @ base.item.t() + model.item_bias.detach()
    assert torch.allclose(emb.user @ emb.item.t(), scores, atol=1e-5)
    bpr = model.loss(USER, POS, NEG)['bpr']
    expected = -F.logsigmoid(scores[USER, POS] - scores[USER, NEG]).mean()
    assert torch.allclose(bpr, expected, atol=1e-5)
    model.zero_grad()
    bpr.backward()
    grad = model.item_bias.grad
    batch = torch.zeros_like(grad, dtype=torch.bool)
    batch[POS], batch[NEG] = True, True
    assert (grad[batch] != 0).all() and (grad[~batch] == 0).all()


@pytest.mark.parametrize('name', MODELS)
def test_large_popularity_prior_ranks_by_training_count(tiny_data, name):
    model = build(tiny_data, name, item_bias='popularity',
                  item_bias_scale=1e4).eval()
    count = torch.bincount(model.train_edge_index[1],
                           minlength=model.num_items)
    users = torch.arange(model.num_users)
    top = model.recommend(users, k=1).view(-1)
    for u in users.tolist():
        seen = set(model.train_edge_index[1][
            model.train_edge_index[0] == u].tolist())
        best = max(count[i] for i in range(model.num_items) if i not in seen)
        assert count[top[u]] == best


@pytest.mark.parametrize('name', MODELS)
def test_unknown_item_bias_is_refused(tiny_data, name):
    with pytest.raises(ValueError, match="unknown item_bias 'pop'"):
        build(tiny_data, name, item_bias='pop')
