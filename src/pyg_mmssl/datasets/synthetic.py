from typing import Dict, Optional

import torch
from torch_geometric.data import HeteroData

from pyg_mmssl.data.graph import build_data


def synthetic_multimodal(
    num_users: int = 1000,
    num_items: int = 800,
    num_clusters: int = 16,
    interactions_per_user: int = 20,
    modality_dims: Optional[Dict[str, int]] = None,
    modality_noise: Optional[Dict[str, float]] = None,
    focus: float = 0.85,
    seed: int = 0,
) -> HeteroData:
    r"""A **synthetic** multimodal implicit-feedback dataset with planted
    structure, generated in memory (no files). It exists so that the library
    can be demonstrated and tested anywhere; its numbers say nothing about
    real data.

    * Each item belongs to one of :obj:`num_clusters` latent clusters and has
      a power-law popularity within it.
    * Each user likes two clusters; a fraction :obj:`focus` of its
      interactions is drawn (by popularity) from them, the rest uniformly.
    * Each modality :math:`m` observes the item's cluster through a random
      projection plus Gaussian noise of scale ``modality_noise[m]``:
      :math:`\mathbf{x}^m_i = \mathbf{c}^m_{k(i)} + \sigma_m
      \boldsymbol{\epsilon}_i`, so features measurably help ranking
      (especially for items with few interactions).
    * Interactions of each user are split 80 / 10 / 10 into train / val /
      test (every user keeps at least one training item).

    Args:
        num_users (int): Users. (default: :obj:`1000`)
        num_items (int): Items. (default: :obj:`800`)
        num_clusters (int): Latent item clusters. (default: :obj:`16`)
        interactions_per_user (int): Mean interactions per user (Poisson,
            at least 3). (default: :obj:`20`)
        modality_dims (dict, optional): Feature size per modality.
            (default: :obj:`{"image": 64, "text": 32}`)
        modality_noise (dict, optional): Noise scale per modality.
            (default: :obj:`{"image": 0.8, "text": 1.2}`)
        focus (float): Share of interactions inside liked clusters.
            (default: :obj:`0.85`)
        seed (int): Random seed. (default: :obj:`0`)
    """
    modality_dims = modality_dims or {'image': 64, 'text': 32}
    modality_noise = modality_noise or {m: 0.8 + 0.4 * j for j, m in
                                        enumerate(modality_dims)}
    if num_items < 2 * num_clusters:
        raise ValueError(f"need at least two items per cluster "
                         f"({num_items} items, {num_clusters} clusters)")
    g = torch.Generator().manual_seed(seed)

    cluster = torch.arange(num_items) % num_clusters
    cluster = cluster[torch.randperm(num_items, generator=g)]
    popularity = torch.rand(num_items, generator=g).pow(3) + 0.02

    counts = torch.poisson(torch.full((num_users, ),
                                      float(interactions_per_user)),
                           generator=g).long().clamp_(3, num_items // 2)
    liked = torch.stack([
        torch.randint(num_clusters, (num_users, ), generator=g),
        torch.randint(num_clusters, (num_users, ), generator=g)
    ], dim=1)

    # Per-user item weights: popularity inside the liked clusters, a flat
    # floor elsewhere; sampling without replacement keeps pairs unique.
    in_liked = (cluster.view(1, -1) == liked[:, :1]) | (cluster.view(1, -1)
                                                        == liked[:, 1:])
    liked_mass = (popularity * in_liked).sum(1, keepdim=True)
    other_mass = (~in_liked).sum(1, keepdim=True).float()
    weight = torch.where(in_liked, focus * popularity / liked_mass,
                         (1 - focus) / other_mass)

    max_count = int(counts.max())
    chosen = torch.multinomial(weight, max_count, replacement=False,
                               generator=g)
    for_user = torch.arange(max_count).view(1, -1) < counts.view(-1, 1)
    user_idx = torch.arange(num_users).view(-1, 1).expand_as(chosen)
    users, items = user_idx[for_user], chosen[for_user]
    rank = torch.arange(max_count).view(1, -1).expand_as(chosen)[for_user]
    # A random draw decides each interaction's split; the user's first item
    # always stays in train.
    shuffle = torch.rand(rank.shape, generator=g)
    splits = torch.where(shuffle < 0.8, 0, torch.where(shuffle < 0.9, 1, 2))
    splits[rank == 0] = 0

    edge_index = torch.stack([users, items])
    features = {}
    for m, dim in modality_dims.items():
        centroids = torch.randn(num_clusters, dim, generator=g)
        noise = torch.randn(num_items, dim, generator=g)
        features[m] = centroids[cluster] + modality_noise[m] * noise
    data = build_data(
        num_users, num_items, {
            'train': edge_index[:, splits == 0],
            'val': edge_index[:, splits == 1],
            'test': edge_index[:, splits == 2],
        }, features, sources={m: f"synthetic '{m}'"
                              for m in modality_dims})
    data['item'].cluster = cluster
    return data
