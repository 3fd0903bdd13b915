import torch

from pyg_mmssl.data import split_edge_index
from pyg_mmssl.nn.models import LightGCN


def test_matches_pyg_lightgcn_with_gcn_norm(tiny_data):
    model = LightGCN.from_data(tiny_data, embedding_dim=8, num_layers=2)
    emb = model.get_embedding()
    # Reference: PyG's own LightGCN normalising on the fly.
    from torch_geometric.nn.models import LightGCN as PyG
    ref = PyG(model.num_users + model.num_items, 8, 2)
    ref.embedding.weight.data.copy_(model.model.embedding.weight.data)
    u, i = split_edge_index(tiny_data, 'train')
    i = i + model.num_users
    full = torch.cat([torch.stack([u, i]), torch.stack([i, u])], 1)
    out = ref.get_embedding(full)
    assert torch.allclose(torch.cat([emb.user, emb.item]), out, atol=1e-6)


def test_recommend_excludes_training_items(tiny_data, device):
    model = LightGCN.from_data(tiny_data, embedding_dim=8).to(device)
    users = torch.arange(model.num_users, device=device)
    top = model.recommend(users, k=5)
    assert top.shape == (model.num_users, 5)
    train = split_edge_index(tiny_data, 'train')
    for u, items in enumerate(top.tolist()):
        assert not set(items) & set(train[1, train[0] == u].tolist())


def test_recommend_more_than_admissible_pads_with_minus_one(tiny_data):
    model = LightGCN.from_data(tiny_data, embedding_dim=8)
    users = torch.arange(model.num_users)
    top = model.recommend(users, k=model.num_items + 10)
    assert top.shape == (model.num_users, model.num_items)
    train = split_edge_index(tiny_data, 'train')
    for u, items in enumerate(top.tolist()):
        seen = set(train[1, train[0] == u].tolist())
        kept = [i for i in items if i >= 0]
        assert items == kept + [-1] * len(seen)  # blanks come last
        assert sorted(kept) == sorted(set(range(model.num_items)) - seen)
