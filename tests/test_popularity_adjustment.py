import json

import pytest
import torch

from pyg_mmssl.cli import build_parser
from pyg_mmssl.files import read_checkpoint
from pyg_mmssl.nn.models import LightGCN
from pyg_mmssl.train import POPULARITY_WEIGHTS, TrainConfig, Trainer


def build(tiny_data):
    torch.manual_seed(0)
    return LightGCN.from_data(tiny_data, embedding_dim=8).eval()


def counted_log_popularity(model):
    count = torch.zeros(model.num_items)
    for i in model.train_edge_index[1].tolist():  # counted one by one
        count[i] += 1
    log = torch.log(1 + count)
    return log - log.mean()


def test_ranking_adds_the_weighted_centred_log_count(tiny_data):
    model = build(tiny_data)
    p = counted_log_popularity(model)
    assert torch.allclose(model.log_popularity(), p, atol=1e-6)
    emb = model.get_embedding()
    plain = emb.user @ emb.item.t()
    ranked = model.ranking_embedding()  # weight 0: the model's own scores
    assert ranked.user.shape == emb.user.shape
    model.popularity_weight.fill_(0.7)
    ranked = model.ranking_embedding()
    assert torch.allclose(ranked.user @ ranked.item.t(), plain + 0.7 * p,
                          atol=1e-5)
    # get_embedding (what training scores) never has it.
    assert torch.equal(model.get_embedding().user, emb.user)


def test_recommend_ranks_with_the_adjustment(tiny_data):
    model = build(tiny_data)
    model.popularity_weight.fill_(1e4)  # popularity decides
    users = torch.arange(model.num_users)
    top = model.recommend(users, k=1, exclude_train=False)[:, 0]
    most = model.log_popularity().argmax()
    assert (model.log_popularity()[top] == model.log_popularity()[most]).all()


def test_checkpoints_without_the_weight_load_unadjusted(tiny_data):
    model = build(tiny_data)
    model.popularity_weight.fill_(0.4)
    state = model.state_dict()
    assert float(state['popularity_weight']) == pytest.approx(0.4)
    other = build(tiny_data)
    other.load_state_dict(state)
    assert float(other.popularity_weight) == pytest.approx(0.4)
    del state['popularity_weight']  # as written before the option
    other.load_state_dict(state)
    assert float(other.popularity_weight) == 0


def test_adjust_popularity_takes_the_best_validation_weight(tiny_data,
                                                            monkeypatch):
    model = build(tiny_data)
    trainer = Trainer(model, tiny_data, TrainConfig(device='cpu', quiet=True))
    # A made-up validation curve over the grid: a tie at 0.2 and 0.4.
    value = {0.0: 0.1, 0.05: 0.2, 0.1: 0.25, 0.2: 0.3, 0.4: 0.3}
    splits = []

    def evaluate(split):
        splits.append(split)
        w = round(float(model.popularity_weight), 6)
        return {'recall@20': value.get(w, 0.)}

    monkeypatch.setattr(trainer, 'evaluate', evaluate)
    weight, curve = trainer.adjust_popularity()
    assert set(splits) == {'val'}  # test is never ranked
    assert list(curve) == list(POPULARITY_WEIGHTS)
    assert weight == 0.2  # the smaller of the tie
    assert float(model.popularity_weight) == pytest.approx(0.2)
    # Weights stay as they were.
    assert torch.equal(model.get_embedding().user,
                       build(tiny_data).get_embedding().user)


def test_fit_reports_and_saves_the_adjusted_model(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = LightGCN.from_data(tiny_data, embedding_dim=8)
    cfg = TrainConfig(epochs=2, batch_size=128, seed=1, device='cpu',
                      quiet=True, adjust_popularity=True)
    result = Trainer(model, tiny_data, cfg, out=str(tmp_path)).fit()
    w = result['popularity_weight']
    assert w in POPULARITY_WEIGHTS
    curve = result['popularity_curve']
    assert result['val']['recall@20'] == pytest.approx(max(curve.values()))
    saved = json.loads((tmp_path / 'metrics.json').read_text())
    assert saved['popularity_weight'] == w
    # best.pt ranks as the run reported.
    fresh = build(tiny_data)
    fresh.load_state_dict(read_checkpoint(str(tmp_path / 'best.pt'))['model'])
    assert float(fresh.popularity_weight) == pytest.approx(w)
    again = Trainer(fresh, tiny_data, cfg).evaluate('test')
    assert again == pytest.approx(result['test'])


def test_cli_flag_turns_it_on_and_off():
    parser = build_parser()
    base = ['train', '--model', 'lightgcn', '--dataset', 'synthetic']
    assert parser.parse_args(base).adjust_popularity is None  # the preset's
    assert parser.parse_args(base + ['--adjust-popularity']
                             ).adjust_popularity is True
    assert parser.parse_args(base + ['--no-adjust-popularity']
                             ).adjust_popularity is False
