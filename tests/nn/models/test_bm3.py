import pytest
import torch
import torch.nn.functional as F

from pyg_mmssl.data import split_edge_index
from pyg_mmssl.nn.models import BM3
from pyg_mmssl.train import TrainConfig, Trainer

BATCH = (torch.tensor([0, 1, 2, 3, 1]), torch.tensor([4, 5, 6, 7, 8]),
         torch.tensor([8, 9, 10, 11, 12]))



@pytest.mark.parametrize('finetune', [True, False])
def test_every_parameter_gets_a_gradient(tiny_data, finetune, device):
    model = BM3.from_data(tiny_data, embedding_dim=8,
                          finetune_features=finetune).to(device)
    names = {n for n, _ in model.named_parameters()}
    assert {'feat_0', 'feat_1'} <= names if finetune else \
        not any(n.startswith('feat_') for n in names)
    model.loss(*(t.to(device) for t in BATCH))['loss'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_matches_a_dense_computation(tiny_data, dense_sym):
    torch.manual_seed(0)
    model = BM3.from_data(tiny_data, embedding_dim=8, num_layers=2,
                          target_dropout=0., cl_weight=0.7,
                          norm_reg=0.3).double()
    U, I = model.num_users, model.num_items
    emb = model.model.embedding.weight
    adj = dense_sym(split_edge_index(tiny_data, 'train'), U, I)
    hidden = (emb + adj @ emb + adj @ (adj @ emb)) / 3
    h_u, h_i = hidden[:U], hidden[U:] + emb[U:]
    out = model()
    assert torch.allclose(out.user_hidden, h_u, atol=1e-10)
    assert torch.allclose(out.item_hidden, h_i, atol=1e-10)
    assert torch.allclose(out.user, model.predictor(h_u), atol=1e-10)
    model.eval()
    rank = model.get_embedding()
    assert torch.allclose(rank.item, model.predictor(h_i), atol=1e-10)

    # The loss, written out with the targets detached (no dropout here).
    user, pos, neg = BATCH
    p = model.predictor

    def miss(a, b):
        return 1 - F.cosine_similarity(a, b.detach(), dim=-1).mean()

    align = miss(p(h_u[user]), h_i[pos]) + miss(p(h_i[pos]), h_u[user])
    modal = 0
    for proj, m in zip(model.projections, ('image', 'text')):
        f = proj(tiny_data['item'][m].double()[pos])
        modal = modal + miss(p(f), h_i[pos]) + miss(p(f), f)
    # The released code's penalty: every row, before the predictor.
    reg = (h_u.norm() + h_i.norm()) / I
    ref = align + 0.7 * modal + 0.3 * reg
    ref_grad = torch.autograd.grad(ref, emb)[0]
    terms = model.loss(user, pos, neg, out)
    for key, value in (('align', align), ('modal', modal), ('reg', reg),
                       ('loss', ref)):
        assert torch.allclose(terms[key], value, atol=1e-10), key
    # Stop-gradient: no gradient flows through the targets.
    grad = torch.autograd.grad(terms['loss'], emb)[0]
    assert torch.allclose(grad, ref_grad, atol=1e-10)


def test_negatives_are_ignored_and_targets_dropped(tiny_data):
    model = BM3.from_data(tiny_data, embedding_dim=8, target_dropout=0.5)
    user, pos, neg = BATCH
    out = model()
    torch.manual_seed(1)
    a = model.loss(user, pos, neg, out)
    torch.manual_seed(1)
    b = model.loss(user, pos, neg.flip(0), out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = model.loss(user, pos, neg, out)  # new dropout masks
    assert not torch.equal(a['align'], c['align'])
    assert torch.equal(a['reg'], c['reg'])


def test_trains_and_uses_each_modality(tiny_data):
    torch.manual_seed(0)
    model = BM3.from_data(tiny_data, embedding_dim=16)
    trainer = Trainer(model, tiny_data, TrainConfig(
        epochs=5, batch_size=64, lr=5e-3, device='cpu', quiet=True))
    before = trainer.evaluate('val')['recall@20']
    assert trainer.fit()['val']['recall@20'] > before

    # Features only enter ranking through training: one step from the
    # same weights, with one modality zeroed or not, gives other scores.
    U, I = model.num_users, model.num_items
    train = split_edge_index(tiny_data, 'train')
    image, text = tiny_data['item']['image'], tiny_data['item']['text']
    scores = []
    for features in ({'image': image, 'text': text},
                     {'image': image, 'text': torch.zeros_like(text)},
                     {'image': torch.zeros_like(image), 'text': text}):
        torch.manual_seed(0)
        model = BM3(U, I, train, features, embedding_dim=8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.loss(*BATCH)['loss'].backward()
        opt.step()
        model.eval()
        emb = model.get_embedding()
        scores.append(emb.user @ emb.item.t())
    for other in scores[1:]:
        assert not torch.allclose(scores[0], other)


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_layers=0), "num_layers must be at least 1, got 0"),
    (dict(target_dropout=1.0), r"target_dropout must be in \[0, 1\)"),
    (dict(dropout=0.3), "BM3 has no option 'dropout'; did you mean "
     "'target_dropout'"),
    (dict(modalities=[]), "at least one modality"),
])
def test_bad_arguments(tiny_data, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        BM3.from_data(tiny_data, **kwargs)
    assert '\n' not in str(info.value)
