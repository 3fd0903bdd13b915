import itertools

import pytest
import torch

from pyg_mmssl.data import split_edge_index
from pyg_mmssl.nn import knn_item_graph
from pyg_mmssl.nn.models import FREEDOM
from pyg_mmssl.nn.models.freedom import (degree_sensitive_sample,
                                         parse_modality_weights)
from pyg_mmssl.train import TrainConfig, Trainer

BATCH = (torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]),
         torch.tensor([8, 9, 10, 11]))


def dense_item_graph(model, features, weights):
    out = 0
    for x, w in zip(features, weights):
        ei, ew = knn_item_graph(x.double(), model.knn_k)
        dense = torch.zeros(model.num_items, model.num_items,
                            dtype=torch.double)
        dense[ei[1], ei[0]] = ew
        out = out + w * dense
    return out


@pytest.mark.parametrize('finetune', [True, False])
def test_every_parameter_gets_a_gradient(tiny_data, finetune, device):
    model = FREEDOM.from_data(tiny_data, embedding_dim=8,
                              finetune_features=finetune).to(device)
    names = {n for n, _ in model.named_parameters()}
    assert {'feat_0', 'feat_1'} <= names if finetune else \
        not any(n.startswith('feat_') for n in names)
    model.loss(*(t.to(device) for t in BATCH))['loss'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_embeddings_match_a_dense_computation(tiny_data, dense_sym):
    torch.manual_seed(0)
    model = FREEDOM.from_data(tiny_data, embedding_dim=8, num_layers=2,
                              item_layers=2, knn_k=4,
                              modality_weights='text=3,image=1').double()
    U, I = model.num_users, model.num_items
    emb = model.model.embedding.weight.detach()
    items = dense_item_graph(model, [tiny_data['item'][m] for m in
                                     ('image', 'text')], [0.25, 0.75])
    h = items @ (items @ emb[U:])
    train = split_edge_index(tiny_data, 'train')
    for training, edges in ((False, train),
                            (True, train[:, model.kept_edges])):
        adj = dense_sym(edges, U, I)
        ref = (emb + adj @ emb + adj @ (adj @ emb)) / 3
        model.train(training)
        with torch.no_grad():
            out = model.get_embedding()
        assert torch.allclose(out.user, ref[:U], atol=1e-10)
        assert torch.allclose(out.item, ref[U:] + h, atol=1e-10)


def test_pruned_subgraph_is_redrawn_and_seeded(tiny_data):
    torch.manual_seed(3)
    a = FREEDOM.from_data(tiny_data, embedding_dim=8, edge_dropout=0.7,
                          resample_every=5)
    torch.manual_seed(3)
    b = FREEDOM.from_data(tiny_data, embedding_dim=8, edge_dropout=0.7,
                          resample_every=5)
    assert torch.equal(a.kept_edges, b.kept_edges)  # the same seed
    num_edges = a.train_edge_index.size(1)
    assert a.kept_edges.numel() == int(num_edges * 0.3)
    assert a.kept_edges.unique().numel() == a.kept_edges.numel()
    assert a.schedule().refresh_every == 5
    before = a.kept_edges.clone()
    first = a().item
    a.refresh_graphs(None)
    assert not torch.equal(a.kept_edges, before)
    assert not torch.allclose(a().item, first)  # the new graph is used
    # A loaded state brings its subgraph (a resumed run continues on it).
    b.load_state_dict(a.state_dict())
    assert torch.allclose(b().item, a().item)
    # Without edge dropout: the whole graph, no refresh.
    full = FREEDOM.from_data(tiny_data, embedding_dim=8, edge_dropout=0.)
    assert full.schedule().refresh_every == 0
    assert not hasattr(full, 'kept_edges')
    full.train()
    train_emb = full.get_embedding()
    full.eval()
    assert torch.allclose(train_emb.item, full.get_embedding().item)


def test_degree_sensitive_sample_keeps_its_distribution():
    # Degrees: users 3, 1, 2; items 3, 1, 2. Weights 1 / sqrt(d_u d_i).
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 0, 0, 2]])
    deg_u = torch.tensor([3., 1., 2.])
    deg_i = torch.tensor([3., 1., 2.])
    w = (deg_u[edge_index[0]] * deg_i[edge_index[1]]).rsqrt().tolist()
    keep = 3  # int(6 * (1 - 0.5))
    # Exact inclusion probabilities of `keep` successive draws without
    # replacement, each proportional to the remaining weights.
    expected = torch.zeros(6, dtype=torch.double)
    for seq in itertools.permutations(range(6), keep):
        prob, left = 1., sum(w)
        for e in seq:
            prob *= w[e] / left
            left -= w[e]
        expected[list(seq)] += prob
    assert torch.isclose(expected.sum(), torch.tensor(3.,
                                                      dtype=torch.double))
    assert (expected - 0.5).abs().max() > 0.1  # far from uniform dropping
    gen = torch.Generator().manual_seed(0)
    draws = 20000
    count = torch.zeros(6, dtype=torch.double)
    for _ in range(draws):
        kept = degree_sensitive_sample(edge_index, 3, 3, 0.5, gen)
        assert kept.numel() == keep
        count[kept] += 1
    freq = count / draws
    # Binomial standard deviation at most sqrt(0.25 / 20000) = 0.0035:
    # a tolerance of 0.015 is more than four of them.
    assert (freq - expected).abs().max() < 0.015, (freq, expected)


def test_trains_and_uses_each_modality(tiny_data):
    torch.manual_seed(0)
    model = FREEDOM.from_data(tiny_data, embedding_dim=16, knn_k=5)
    trainer = Trainer(model, tiny_data, TrainConfig(
        epochs=5, batch_size=64, lr=5e-3, device='cpu', quiet=True))
    before = trainer.evaluate('val')['recall@20']
    assert trainer.fit()['val']['recall@20'] > before

    # The same ID embeddings (seeded), other item graphs: other scores.
    U, I = model.num_users, model.num_items
    train = split_edge_index(tiny_data, 'train')
    image, text = tiny_data['item']['image'], tiny_data['item']['text']
    scores = []
    for features in ({'image': image, 'text': text}, {'image': image},
                     {'text': text}, {'image': image,
                                      'text': torch.zeros_like(text)}):
        torch.manual_seed(0)
        model = FREEDOM(U, I, train, features, embedding_dim=8).eval()
        emb = model.get_embedding()
        scores.append(emb.user @ emb.item.t())
    for other in scores[1:]:
        assert not torch.allclose(scores[0], other)


def test_modality_weights():
    assert parse_modality_weights(None, ['a', 'b']) == [0.5, 0.5]
    assert parse_modality_weights('b=3, a=1', ['a', 'b']) == [0.25, 0.75]


@pytest.mark.parametrize('kwargs,message', [
    (dict(knn_k=0), "knn_k must be at least 1, got 0"),
    (dict(edge_dropout=1.0), r"edge_dropout must be in \[0, 1\), got 1.0"),
    (dict(resample_every=0), "resample_every must be at least 1, got 0"),
    (dict(modality_weights='image=1'), "no weight for modality 'text'"),
    (dict(modality_weights='image=1,audio=2'), "names modality 'audio', "
     r"but the data has \['image', 'text'\]"),
    (dict(modality_weights='image=x,text=1'), "must read 'name=weight"),
    (dict(modality_weights='image=0,text=0'), "are all zero"),
    (dict(knn=3), "FREEDOM has no option 'knn'; did you mean 'knn_k'"),
    (dict(modalities=[]), "at least one modality"),
])
def test_bad_arguments(tiny_data, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        FREEDOM.from_data(tiny_data, **kwargs)
    assert '\n' not in str(info.value)
