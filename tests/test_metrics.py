import math

import pytest
import torch
from torch_geometric.metrics import (LinkPredHitRatio, LinkPredMAP,
                                     LinkPredNDCG, LinkPredPrecision,
                                     LinkPredRecall)

from pyg_mmssl.data import to_csr
from pyg_mmssl.metrics import evaluate, ranking_metrics
from pyg_mmssl.ranking import topk_chunks


def test_ranking_metrics_by_hand():
    # User A: relevant {1, 3}, ranked [1, 2, 3] -> hits [1, 0, 1].
    # User B: relevant {5},    ranked [0, 5, 7] -> hits [0, 1, 0].
    hits = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    m = ranking_metrics(hits, torch.tensor([2, 1]), ks=(2, 3))
    idcg2 = 1 + 1 / math.log2(3)
    expected = {
        'recall@2': [0.5, 1.0], 'precision@2': [0.5, 0.5],
        'hit@2': [1, 1], 'ndcg@2': [1 / idcg2, 1 / math.log2(3)],
        'map@2': [0.5, 0.5],
        'recall@3': [1.0, 1.0], 'precision@3': [2 / 3, 1 / 3],
        'ndcg@3': [1.5 / idcg2, 1 / math.log2(3)],
        'map@3': [(1 + 2 / 3) / 2, 0.5],
    }
    for key, value in expected.items():
        assert torch.allclose(m[key], torch.tensor(value, dtype=torch.float)), \
            key


def test_no_relevant_items_is_an_error():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(torch.zeros(1, 3, dtype=torch.bool), torch.tensor([0]))


def brute_force(user_emb, item_emb, relevant, exclude, k):
    recalls, ndcgs = [], []
    for u, rel in relevant.items():
        if not rel:
            continue
        scores = (user_emb[u] @ item_emb.t()).tolist()
        order = sorted((i for i in range(len(scores)) if i not in exclude[u]),
                       key=lambda i: -scores[i])[:k]
        hits = [i in rel for i in order]
        recalls.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
        ndcgs.append(dcg / idcg)
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


def random_split(num_users=37, num_items=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(num_users, num_items, generator=g)
    train = (mask < 0.2).nonzero().t()
    test = ((mask >= 0.2) & (mask < 0.3)).nonzero().t()
    return train, test


def test_evaluate_against_brute_force(device):
    U, I = 37, 23
    train, test = random_split(U, I)
    user_emb, item_emb = torch.randn(U, 8), torch.randn(I, 8)
    relevant = {u: set() for u in range(U)}
    exclude = {u: set() for u in range(U)}
    for u, i in test.t().tolist():
        relevant[u].add(i)
    for u, i in train.t().tolist():
        exclude[u].add(i)
    for chunk in (5, 1024):
        out = evaluate(user_emb.to(device), item_emb.to(device),
                       to_csr(test, U, I),
                       to_csr(train, U, I), ks=(5, 20), chunk_size=chunk)
        for k in (5, 20):
            recall, ndcg = brute_force(user_emb, item_emb, relevant, exclude,
                                       k)
            assert out[f'recall@{k}'] == pytest.approx(recall, abs=1e-6)
            assert out[f'ndcg@{k}'] == pytest.approx(ndcg, abs=1e-6)
    assert out['num_users'] == sum(1 for r in relevant.values() if r)


def test_agrees_with_pyg_link_pred_metrics():
    U, I, k = 50, 40, 10
    train, test = random_split(U, I, seed=1)
    user_emb, item_emb = torch.randn(U, 16), torch.randn(I, 16)
    ours = evaluate(user_emb, item_emb, to_csr(test, U, I),
                    to_csr(train, U, I), ks=(k, ))
    (_, top), = topk_chunks(user_emb, item_emb, k,
                            exclude=to_csr(train, U, I), chunk_size=U)
    pyg = {
        'recall': LinkPredRecall(k), 'precision': LinkPredPrecision(k),
        'ndcg': LinkPredNDCG(k), 'map': LinkPredMAP(k),
        'hit': LinkPredHitRatio(k),
    }
    for name, metric in pyg.items():
        metric.update(top.indices, test)
        assert ours[f'{name}@{k}'] == pytest.approx(float(metric.compute()),
                                                    abs=1e-6), name
