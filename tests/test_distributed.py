import json
import sys
import time
from pathlib import Path

import pytest
import torch

from pyg_mmssl.cli import main
from pyg_mmssl.distributed import RankFailed, launch

sys.path.insert(0, str(Path(__file__).parent))
import _dist_worker  # noqa: E402

FAST = ['--epochs', '3', '--embedding-dim', '8', '--quiet', '--device',
        'cpu', '--batch-size', '256', '--seed', '3']


def train(tmp_path, name, model, *extra):
    out = tmp_path / name
    assert main(['train', '--model', model, '--dataset', 'synthetic',
                 '--out', str(out)] + FAST + list(extra)) == 0
    return json.loads((out / 'metrics.json').read_text())


def test_two_processes_match_one(tmp_path):
    # Same seed, same global batch: each rank trains on half of every batch
    # and DDP averages the gradients, so the two runs take the same steps
    # up to floating-point summation order.
    one = train(tmp_path, 'one', 'lightgcn')
    two = train(tmp_path, 'two', 'lightgcn', '--nproc', '2')
    assert two['world_size'] == 2
    fingerprints = two['rank_fingerprints']
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    for split in ('val', 'test'):
        for key in ('recall@20', 'ndcg@20', 'precision@20'):
            assert abs(one[split][key] - two[split][key]) <= 2e-3, \
                (split, key, one[split][key], two[split][key])
    assert one['best_epoch'] == two['best_epoch']


@pytest.mark.parametrize('model,extra', [
    ('mmssl', ['--critic', 'exact', '--topk-rate', '0.05']),
    ('mmgcn', []),
])
def test_two_processes_train_every_model(tmp_path, model, extra):
    out = train(tmp_path, model, model, '--nproc', '2', '--epochs', '2',
                *extra)
    assert out['epochs_run'] == 2
    assert out['rank_fingerprints'][0] == out['rank_fingerprints'][1]
    # Only rank 0 wrote, once.
    files = sorted(p.name for p in (tmp_path / model).iterdir())
    assert files == ['best.pt', 'history.json', 'last.pt', 'metrics.json']


def test_all_gather_cat_keeps_rank_order(tmp_path):
    path = tmp_path / 'gathered.pt'
    launch(_dist_worker.gather_shards, 2, (str(path), ))
    out = torch.load(path)
    # rank 0 holds rows 0..5 (times 1), rank 1 rows 6..10 (times 2)
    assert out[:, 0].tolist() == list(range(6)) + [12, 14, 16, 18, 20]


def test_failing_rank_stops_the_run():
    start = time.monotonic()
    with pytest.raises(RankFailed, match="rank 1: ValueError: boom"):
        launch(_dist_worker.fail_on_rank_1, 2)
    assert time.monotonic() - start < 60  # rank 0 was not left waiting


def test_failing_rank_through_cli(tmp_path, capsys):
    # An option that fails inside every rank (the model rejects it).
    code = main(['train', '--model', 'mmssl', '--dataset', 'synthetic',
                 '--out', str(tmp_path / 'bad'), '--nproc', '2',
                 '--refresh-every', '0'] + FAST)
    assert code == 1
    err = capsys.readouterr().err
    assert 'distributed training stopped: rank' in err
    assert 'refresh_every must be positive' in err


def test_two_processes_evaluate_mostpop_as_one(tmp_path):
    # No parameters, no DDP: the ranks split the users of the evaluation.
    def run(name, *extra):
        out = tmp_path / name
        assert main(['train', '--model', 'mostpop', '--dataset', 'synthetic',
                     '--out', str(out), '--quiet', '--device', 'cpu',
                     *extra]) == 0
        return json.loads((out / 'metrics.json').read_text())

    one, two = run('one'), run('two', '--nproc', '2')
    assert two['world_size'] == 2 and two['best_epoch'] == 0
    for split in ('val', 'test'):
        assert one[split]['recall@20'] == pytest.approx(
            two[split]['recall@20'], abs=1e-6)
