import pytest
import torch

from pyg_mmssl.data import BPRSampler


def test_negatives_are_never_training_items():
    g = torch.Generator().manual_seed(0)
    # User 0 has interacted with all items but one: its only negative is 4.
    edge_index = torch.tensor([[0, 0, 0, 0, 1, 2], [0, 1, 2, 3, 4, 0]])
    sampler = BPRSampler(edge_index, 3, 5, batch_size=4, generator=g)
    seen = []
    for _ in range(50):
        for batch in sampler:
            assert not sampler.is_train(batch.user, batch.neg).any()
            assert sampler.is_train(batch.user, batch.pos).all()
            seen.append(batch)
    user = torch.cat([b.user for b in seen])
    neg = torch.cat([b.neg for b in seen])
    assert set(neg[user == 0].tolist()) == {4}
    assert set(neg[user == 1].tolist()) == {0, 1, 2, 3}  # uniform support


def test_epoch_covers_every_interaction_once():
    edge_index = torch.randint(0, 50, (2, 300))
    edge_index = torch.unique(edge_index[0] * 50 + edge_index[1])
    edge_index = torch.stack([edge_index // 50, edge_index % 50])
    sampler = BPRSampler(edge_index, 50, 50, batch_size=64)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    pairs = torch.cat([b.user * 50 + b.pos for b in batches])
    assert sorted(pairs.tolist()) == sorted(
        (edge_index[0] * 50 + edge_index[1]).tolist())


def test_seeded_and_errors():
    edge_index = torch.tensor([[0, 1], [0, 1]])
    a = list(BPRSampler(edge_index, 2, 9, 1, torch.Generator().manual_seed(3)))
    b = list(BPRSampler(edge_index, 2, 9, 1, torch.Generator().manual_seed(3)))
    assert all(torch.equal(x.neg, y.neg) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="user 0 interacted with every item"):
        BPRSampler(torch.tensor([[0, 0], [0, 1]]), 1, 2)
    with pytest.raises(ValueError, match="batch_size"):
        BPRSampler(edge_index, 2, 9, 0)
