import json
import subprocess
import sys

import pytest

from pyg_mmssl.cli import main

FAST = ['--epochs', '2', '--embedding-dim', '8', '--num-layers', '1',
        '--quiet', '--device', 'cpu']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'lightgcn'
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--out', str(out)] + FAST) == 0
    return out


def test_train_writes_results(trained, capsys):
    metrics = json.loads((trained / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 2
    assert metrics['meta']['model'] == 'lightgcn'
    assert {'recall@20', 'ndcg@20', 'precision@20', 'hit@20', 'map@20',
            'recall@50'} <= set(metrics['test'])
    assert (trained / 'best.pt').exists() and (trained / 'last.pt').exists()


def test_train_refuses_to_overwrite_and_resumes(trained, capsys):
    before = (trained / 'metrics.json').read_text()
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--out', str(trained)] + FAST) == 2
    assert 'already holds a run' in capsys.readouterr().err
    assert (trained / 'metrics.json').read_text() == before
    args = ['train', '--model', 'lightgcn', '--dataset', 'synthetic', '--out',
            str(trained), '--resume'] + FAST
    args[args.index('--epochs') + 1] = '3'
    assert main(args) == 0
    assert json.loads((trained / 'metrics.json').read_text())[
        'epochs_run'] == 3


def test_evaluate_matches_training_report(trained, capsys):
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(trained / 'best.pt'),
                 '--json', '--device', 'cpu']) == 0
    res = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained / 'metrics.json').read_text())
    assert res['test']['recall@20'] == pytest.approx(
        metrics['test']['recall@20'])


def test_recommend_never_returns_training_items(trained, capsys):
    from pyg_mmssl.datasets import synthetic_multimodal
    from pyg_mmssl.data import split_edge_index
    train = split_edge_index(synthetic_multimodal(), 'train')
    capsys.readouterr()
    assert main(['recommend', '--checkpoint', str(trained / 'best.pt'),
                 '--user', '3', '7', '--k', '20', '--device', 'cpu']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        user = int(line.split(':')[0].split()[1])
        items = list(map(int, line.split(':')[1].split()))
        assert len(items) == len(set(items)) == 20
        assert not set(items) & set(train[1, train[0] == user].tolist())


def test_info(capsys):
    assert main(['info', '--dataset', 'synthetic']) == 0
    out = capsys.readouterr().out
    assert 'users' in out and 'modalities' in out


@pytest.mark.parametrize('argv,message', [
    (['recommend', '--checkpoint', 'nope.pt', '--user', '1'],
     "checkpoint 'nope.pt' does not exist"),
    (['info', '--dataset', 'mmssl'], "pass --root DIR"),
    (['info', '--dataset', 'mmssl', '--root', '/nonexistent'],
     "'/nonexistent' does not exist"),
    (['train', '--model', 'lightgcn', '--dataset', 'synthetic',
      '--epochs', '0'], "epochs must be positive"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1


def test_bad_user_and_console_script(trained):
    proc = subprocess.run(
        [sys.executable, '-m', 'pyg_mmssl.cli', 'recommend', '--checkpoint',
         str(trained / 'best.pt'), '--user', '100000', '--device', 'cpu'],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'user 100000 out of range' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_train_mmssl_and_compare(tmp_path, capsys):
    out = tmp_path / 'mmssl'
    assert main(['train', '--model', 'mmssl', '--dataset', 'synthetic',
                 '--out', str(out), '--critic', 'lowrank', '--topk-rate',
                 '0.01', '--no-gumbel'] + FAST) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    cfg = metrics['meta']['model_config']
    assert cfg['critic'] == 'lowrank' and cfg['gumbel'] is False
    assert cfg['embedding_dim'] == 8
    history = json.loads((out / 'history.json').read_text())
    assert {'bpr', 'cl', 'adv', 'd'} <= set(history[0])
    capsys.readouterr()
    assert main(['compare', str(out)]) == 0
    assert 'mmssl (lowrank critic)' in capsys.readouterr().out


def test_option_of_another_model_is_refused(capsys):
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--critic', 'dense']) == 2
    assert "--critic does not apply to model 'lightgcn'" in \
        capsys.readouterr().err


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    import torch
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    assert main(['evaluate', '--checkpoint', str(bad)]) == 2
    assert 'is not a pyg-mmssl checkpoint' in capsys.readouterr().err
    torch.save({'model': {}}, tmp_path / 'other.pt')
    assert main(['evaluate', '--checkpoint', str(tmp_path / 'other.pt')]) == 2
    assert 'is not a pyg-mmssl checkpoint' in capsys.readouterr().err


def test_train_mmgcn(tmp_path):
    out = tmp_path / 'mmgcn'
    assert main(['train', '--model', 'mmgcn', '--dataset', 'synthetic',
                 '--out', str(out), '--combine', 'add'] + FAST) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['meta']['model_config']['combine'] == 'add'


def test_same_seed_same_result(tmp_path):
    results = []
    for name in ('a', 'b'):
        assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                     '--out', str(tmp_path / name), '--seed', '3'] + FAST) == 0
        results.append(json.loads((tmp_path / name / 'metrics.json')
                                  .read_text())['test'])
    assert results[0] == results[1]
