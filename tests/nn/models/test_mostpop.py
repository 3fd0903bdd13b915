import torch
from torch_geometric.data import HeteroData

from pyg_mmssl.metrics import evaluate
from pyg_mmssl.nn.models import MostPop
from pyg_mmssl.train import TrainConfig, Trainer


def _data():
    r"""4 users, 5 items; training counts of items 0..4: 3, 2, 1, 0, 0."""
    data = HeteroData()
    data['user'].num_nodes, data['item'].num_nodes = 4, 5
    train = torch.tensor([[0, 1, 2, 0, 1, 3],
                          [0, 0, 0, 1, 1, 2]])
    data['user', 'interacts', 'item'].edge_index = train
    data['user', 'interacts', 'item'].val_edge_index = torch.tensor(
        [[0, 3], [2, 1]])
    data['user', 'interacts', 'item'].test_edge_index = torch.tensor(
        [[1, 2, 3], [2, 1, 0]])
    return data


def test_scores_are_training_counts_and_training_items_are_excluded():
    model = MostPop.from_data(_data())
    assert list(model.parameters()) == [] and not model.trainable
    emb = model.get_embedding()
    assert (emb.user @ emb.item.t() == torch.tensor(
        [3., 2., 1., 0., 0.])).all()
    top = model.recommend(torch.arange(4), k=2)
    assert top[0, 0] == 2 and top[2].tolist() == [1, 2]  # 0 saw 0, 1
    assert top[3].tolist() == [0, 1]  # 3 saw 2


def test_evaluated_as_built_with_hand_computed_metrics(tmp_path):
    trainer = Trainer(MostPop.from_data(_data()), _data(),
                      TrainConfig(ks=[1, 2], quiet=True),
                      out=str(tmp_path / 'run'))
    assert trainer.optimizer is None
    result = trainer.fit()
    assert result['best_epoch'] == 0 and result['epochs_run'] == 0
    # Test: users 1 (saw 0, 1), 2 (saw 0) and 3 (saw 2) want items 2, 1
    # and 0, each their first unseen item by count.
    assert result['test']['num_users'] == 3
    assert result['test']['recall@1'] == result['test']['ndcg@1'] == 1.
    # Validation: user 0 (saw 0, 1) wants item 2, first; user 3 (saw 2)
    # wants item 1, second after item 0.
    val = result['val']
    assert val['recall@1'] == .5 and val['recall@2'] == 1.
    ndcg = (1 + 1 / torch.log2(torch.tensor(3., dtype=torch.double))) / 2
    assert abs(val['ndcg@2'] - ndcg.item()) < 1e-6
    run = tmp_path / 'run'
    assert sorted(p.name for p in run.iterdir()) == [
        'best.pt', 'history.json', 'metrics.json']


def test_matches_ranking_by_counts_on_a_synthetic_dataset(tiny_data):
    model = MostPop.from_data(tiny_data)
    emb = model.get_embedding()
    from pyg_mmssl.data import split_edge_index, to_csr
    train = split_edge_index(tiny_data, 'train')
    counts = torch.bincount(train[1], minlength=model.num_items).float()
    ones = torch.ones(model.num_users, 3)
    val = to_csr(split_edge_index(tiny_data, 'val'), model.num_users,
                 model.num_items)
    ours = evaluate(emb.user, emb.item, val, model.train_csr())
    # The same ranking from any embedding whose scores are the counts.
    ref = evaluate(ones, counts.view(-1, 1).expand(-1, 3) / 3, val,
                   model.train_csr())
    assert ours == ref
