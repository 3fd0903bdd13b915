r"""MMSSL on a graph shaped like PyG's own MovieLens ``HeteroData``: node
types ``user`` and ``movie``, edges ``('user', 'rates', 'movie')``, movie
features in ``data['movie'].x`` used as the one modality. No conversion: node
and edge type names are arguments. The graph is built in the script (random,
with planted genre structure) so that it runs offline.

    python examples/pyg_heterodata.py
"""
import torch
from torch_geometric.data import HeteroData

from pyg_mmssl.nn.models import MMSSL
from pyg_mmssl.train import TrainConfig, Trainer

torch.manual_seed(0)
num_users, num_movies, num_genres = 300, 200, 8

genre = torch.randint(num_genres, (num_movies, ))
liked = torch.randint(num_genres, (num_users, ))
prob = 0.02 + 0.25 * (liked.view(-1, 1) == genre.view(1, -1)).float()
edge_index = (torch.rand(num_users, num_movies) < prob).nonzero().t()

# Hold out 10% + 10% of the ratings for validation and test.
perm = torch.randperm(edge_index.size(1))
n = edge_index.size(1) // 10
data = HeteroData()
data['user'].num_nodes = num_users
data['movie'].num_nodes = num_movies
data['movie'].x = torch.nn.functional.one_hot(genre, num_genres).float() + \
    0.3 * torch.randn(num_movies, num_genres)
data['user', 'rates', 'movie'].edge_index = edge_index[:, perm[2 * n:]]
data['user', 'rates', 'movie'].val_edge_index = edge_index[:, perm[:n]]
data['user', 'rates', 'movie'].test_edge_index = edge_index[:, perm[n:2 * n]]

model = MMSSL.from_data(data, modalities=['x'], item='movie', edge='rates',
                        embedding_dim=32, topk_rate=0.05, critic='lowrank')
config = TrainConfig(epochs=15, batch_size=512, lr=5e-3, device='cpu',
                     quiet=True, seed=0)
trainer = Trainer(model, data, config, edge_type=('user', 'rates', 'movie'))
result = trainer.fit()
print(f"best epoch {result['best_epoch']}: test recall@20 "
      f"{result['test']['recall@20']:.4f}, ndcg@20 "
      f"{result['test']['ndcg@20']:.4f}")

# The learned per-modality graph, as an edge type of the same HeteroData:
model.write_learned_graphs(data, item='movie')
learned = data['user', 'x', 'movie'].edge_index
print(f"learned ('user', 'x', 'movie') graph: {learned.size(1)} edges, "
      f"{model.k} per user")
