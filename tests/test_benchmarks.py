import json
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def bench(name):
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    try:
        yield __import__(name)
    finally:
        sys.path.pop(0)


@pytest.fixture
def suite():
    yield from bench('suite')


def test_suite_smoke(suite, tmp_path):
    # 1 seed, 1 epoch on the tiny synthetic dataset: checks the files only.
    out = tmp_path / 'bench'
    suite.main(['--dataset', 'synthetic', '--seeds', '0', '--epochs', '1',
                '--critic', 'lowrank', '--device', 'cpu', '--jobs', '2',
                '--threads', '1', '--out', str(out)])
    result = json.loads((out / 'results.json').read_text())
    # Two runs at a time, results still in (model, seed) order.
    assert [r['model'] for r in result['runs']] == list(suite.MODELS)
    assert result['jobs'] == 2 and result['threads'] == 1
    for run in result['runs']:
        # MostPop is evaluated as built: no epoch, its curve one point at 0 s.
        trained = run['model'] != 'mostpop'
        assert run['epochs_run'] == int(trained) and run['peak_memory_mb'] > 0
        assert trained or (run['curve'][0][0] == 0 and
                           run['best_seconds'] == 0)
        assert {'recall@20', 'ndcg@50', 'precision@10', 'hit@20'} <= set(
            run['test'])
        assert len(run['curve']) == 1
    assert result['environment']['torch'] and result['command']
    table = (out / 'results.md').read_text()
    assert table.count('\n| ') == 14  # two tables: header + 6 models
    png = (out / 'val_recall.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    # A second call reuses finished runs instead of training again.
    mtime = osp.getmtime(out / 'runs' / 'mmssl-seed0' / 'metrics.json')
    suite.main(['--dataset', 'synthetic', '--seeds', '0', '--epochs', '1',
                '--models', 'mmssl', '--device', 'cpu', '--out', str(out)])
    assert osp.getmtime(out / 'runs' / 'mmssl-seed0' /
                        'metrics.json') == mtime


def test_suite_models_with_presets_and_headline(suite, tmp_path, capsys):
    # 'NAME:PRESET' runs that preset in its own folder; the headline table
    # compares every model with the first one, seed by seed.
    out = tmp_path / 'bench'
    suite.main(['--dataset', 'synthetic', '--seeds', '0', '--epochs', '2',
                '--models', 'lightgcn', 'lightgcn:default', '--device',
                'cpu', '--threads', '1', '--out', str(out)])
    result = json.loads((out / 'results.json').read_text())
    a, b = result['runs']
    assert (a['model'], b['model']) == ('lightgcn', 'lightgcn:default')
    assert '--preset default' in b['command'] and '--preset' not in \
        a['command']
    assert (out / 'runs' / 'lightgcn-default-seed0' / 'metrics.json').exists()
    assert a['test'] == b['test']  # the same preset, seed and data
    # Evaluated every epoch: the curve's point at the best epoch.
    assert a['best_seconds'] == a['curve'][a['best_epoch'] - 1][0]
    rows = [line for line in (out / 'results.md').read_text().splitlines()
            if line.startswith('| lightgcn')]
    headline = rows[:2]
    for row in headline:
        cells = [c.strip() for c in row.split('|')[1:-1]]
        assert cells[4] == '1.00/1.00'  # x the reference, R and N
        assert cells[7] != 'never'  # the same run reaches its own best
    # A model or preset that does not exist is one usage line, not a run.
    for bad, message in (('lightgcn:paper', "unknown preset 'paper' for "
                          "lightgcn"), ('gcn', "unknown model 'gcn'")):
        with pytest.raises(SystemExit):
            suite.main(['--models', bad, '--out', str(tmp_path / 'x')])
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


def test_suite_headline_targets_the_reference_curve(suite):
    # With the popularity adjustment a run's reported validation (0.5 here)
    # is above every point of its per-epoch curve: the time to the
    # reference's best reads the curve's own best (0.3, at 2 s).
    def run(model, curve, val):
        return {'model': model, 'seed': 0, 'curve': curve,
                'val': {'recall@20': val},
                'test': {'recall@20': 0.1, 'ndcg@20': 0.1},
                'seconds_per_epoch': 1.0, 'best_seconds': 2.0,
                'peak_memory_mb': 1.0}

    runs = [run('a', [(1.0, 0.2), (2.0, 0.3), (3.0, 0.25)], 0.5),
            run('b', [(4.0, 0.29), (8.0, 0.31)], 0.6)]
    rows = suite.headline(runs, ['a', 'b']).splitlines()[2:]
    reach = [[c.strip() for c in row.split('|')[1:-1]][7] for row in rows]
    assert reach == ['2', '8']


def test_suite_reports_a_failed_run(suite, tmp_path):
    out = tmp_path / 'bench'
    with pytest.raises(SystemExit, match='lightgcn seed 0 failed'):
        suite.main(['--dataset', 'no-such-dataset', '--seeds', '0',
                    '--models', 'lightgcn', '--device', 'cpu', '--out',
                    str(out)])
    with pytest.raises(SystemExit):
        suite.main(['--jobs', '0', '--out', str(out)])


@pytest.fixture
def epoch_time():
    yield from bench('epoch_time')


def test_epoch_time_relative_to_lightgcn(epoch_time, tmp_path):
    path = tmp_path / 'epoch.json'
    rows = epoch_time.main(['--dataset', 'synthetic', '--steps', '1',
                            '--threads', '1', '--configs', 'lightgcn',
                            'mmssl:lowrank', '--json', str(path)])
    assert [r['config'] for r in rows] == ['lightgcn', 'mmssl:lowrank']
    assert rows[0]['x_lightgcn'] == 1.0
    assert rows[1]['x_lightgcn'] == pytest.approx(
        rows[1]['seconds_per_epoch'] / rows[0]['seconds_per_epoch'])
    assert all(r['peak_memory_mb'] > 0 and r['steps_timed'] == 1
               for r in rows)
    for r in rows:  # the runtime's RSS before data, and training's share
        assert 0 < r['runtime_memory_mb'] <= r['peak_memory_mb']
        assert r['own_memory_mb'] == pytest.approx(
            r['peak_memory_mb'] - r['runtime_memory_mb'])
    saved = json.loads(path.read_text())['results']
    assert saved[1]['x_lightgcn'] == rows[1]['x_lightgcn']


@pytest.fixture
def profile_step():
    yield from bench('profile_step')


def test_profile_step_ranges_and_epoch_work(profile_step):
    (row, ) = profile_step.main(['--dataset', 'synthetic', '--steps', '1',
                                 '--threads', '1', '--critics', 'lowrank'])
    ms = row['ms']
    assert ms['step.forward'] > 0 and ms['step.refresh'] > 0
    assert ms['step'] >= ms['step.forward'] + ms['step.backward']
    assert row['epoch_ms']['sampling'] > 0
    assert row['epoch_ms']['evaluation'] > 0


@pytest.fixture
def scaling():
    yield from bench('scaling')


def test_scaling_exponent_and_generator(scaling):
    assert scaling.fit_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2)
    data = scaling.power_law_data(0.02)
    train = data['user', 'interacts', 'item'].edge_index
    assert data['user'].num_nodes == round(9308 * 0.02)
    assert train.size(1) == round(59541 * 0.02 / 0.8) - 2 * (
        round(59541 * 0.02 / 0.8) // 10)
    # Power law: the most popular tenth of the items holds far more than a
    # tenth of the interactions.
    deg = torch.bincount(train[1], minlength=data['item'].num_nodes)
    top = deg.sort(descending=True).values[:deg.numel() // 10]
    assert top.sum() > 0.3 * deg.sum()
    again = scaling.power_law_data(0.02)
    assert torch.equal(again['user', 'interacts', 'item'].edge_index, train)


def test_scaling_smoke(scaling, tmp_path):
    out = tmp_path / 'scaling'
    scaling.main(['--scales', '0.02', '0.04', '--configs', 'lightgcn',
                  'mmssl:lowrank', '--steps', '1', '--out', str(out)])
    result = json.loads((out / 'scaling.json').read_text())
    assert len(result['results']) == 4
    assert set(result['fits']) == {'lightgcn', 'mmssl:lowrank'}
    assert 'step.refresh' in result['fits']['mmssl:lowrank']
    assert (out / 'scaling.png').read_bytes()[:4] == b'\x89PNG'
    assert (out / 'scaling.md').read_text().count('mmssl:lowrank') >= 3


@pytest.fixture
def common():
    yield from bench('common')


def test_preset_trainer_configs(common, tiny_data):
    trainer = common.preset_trainer('mmssl:exact:refresh_every=7:gumbel=false',
                                    tiny_data, 'synthetic')
    model = trainer.model
    assert model.discriminator.critic == 'exact'
    assert model.refresh_every == 7 and model.gumbel is False
    with pytest.raises(SystemExit, match="mmssl has no option 'nope'"):
        common.preset_trainer('mmssl:nope=1', tiny_data, 'synthetic')
    # A critic named is a critic used, whatever the preset says, unless an
    # override turns structure learning off.
    assert common.preset_trainer('mmssl', tiny_data,
                                 'synthetic').model.adversarial is False
    assert common.preset_trainer('mmssl:lowrank', tiny_data,
                                 'synthetic').model.adversarial is True
    assert common.preset_trainer('mmssl:lowrank:adversarial=false', tiny_data,
                                 'synthetic').model.adversarial is False
    # 'model@preset' takes another preset than the dataset's.
    paper = common.preset_trainer('mmssl@tiktok-paper:lowrank', tiny_data,
                                  'synthetic')
    assert paper.model.lambda_f == 0.55 and paper.config.lr == 5.4e-4
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        common.preset_trainer('mmssl@nope', tiny_data, 'synthetic')


@pytest.fixture
def refresh():
    yield from bench('refresh')


def test_refresh_benchmark_agrees(refresh, tmp_path):
    path = tmp_path / 'refresh.json'
    rows = refresh.main(['--dataset', 'synthetic', '--repeats', '1',
                         '--threads', '1', '--json', str(path)])
    assert [r['embeddings'] for r in rows] == ['initial'] * len(rows)
    assert len(rows) >= 2  # one per modality
    for r in rows:
        assert r['full_ms'] > 0 and r['pruned_ms'] > 0
        assert r['same_scores'] == 1.0 and 0 < r['same_items'] <= 1
    assert json.loads(path.read_text())['results'] == rows


@pytest.fixture
def compare_suites():
    yield from bench('compare_suites')


def fake_run(root, seed, val, test_recall=None, best_epoch=1):
    run = root / 'runs' / f'mmssl-seed{seed}'
    run.mkdir(parents=True)
    history = [{'epoch': i + 1, 'val': {'recall@20': v}}
               for i, v in enumerate(val)]
    (run / 'history.json').write_text(json.dumps(history))
    if test_recall is not None:
        (run / 'metrics.json').write_text(json.dumps({
            'best_epoch': best_epoch, 'epochs_run': len(val),
            'val': {'recall@20': max(val)},
            'test': {'recall@20': test_recall, 'ndcg@20': test_recall / 2},
        }))


def test_compare_suites(compare_suites, tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    fake_run(a, 0, [0.1, 0.2, 0.3], test_recall=0.08, best_epoch=3)
    fake_run(a, 1, [0.3, 0.1, 0.2], test_recall=0.10, best_epoch=1)
    fake_run(b, 0, [0.2, 0.2, 0.5, 0.1], test_recall=0.0846, best_epoch=3)
    fake_run(b, 2, [0.4, 0.6, 0.5])  # still training: no metrics.json
    (b / 'runs' / 'lightgcn-seed0').mkdir()  # another model: ignored
    text = compare_suites.main([str(a), str(b), '--labels', 'lowrank', 'exact',
                         '--block', '2'])
    rows = [line for line in text.splitlines() if line.startswith('| ')]
    # Mean ± sample std of 0.08 and 0.10; -6.0% = (0.0846 - 0.09) / 0.09.
    assert rows[1] == ('| lowrank | 2 (0, 1) | 0.0900 ± 0.0141 | 0.0450 ± '
                       '0.0071 |  | 0.3000 ± 0.0000 | 2 | 3 |')
    assert rows[2] == ('| exact | 1 (0) | 0.0846 | 0.0423 | -6.0% | 0.5000 '
                       '| 3 | 4 |')
    assert rows[3] == ('| epochs | lowrank s0 | lowrank s1 | exact s0 | '
                       'exact s2 |')
    assert rows[4] == '| 1-2 | 0.1500 | 0.2000 | 0.2000 | 0.5000 |'
    # Epoch 4 exists only for exact s0; the others reach 1 of the 2 epochs.
    assert rows[5] == ('| 3-4 | 0.3000 (1) | 0.2000 (1) | 0.3000 | '
                       '0.5000 (1) |')
    with pytest.raises(SystemExit, match='no .mmssl. runs'):
        compare_suites.main([str(tmp_path / 'empty')])
    with pytest.raises(SystemExit):
        compare_suites.main([str(a), str(b), '--labels', 'x', 'x'])


@pytest.fixture
def time_to_reach():
    yield from bench('time_to_reach')


def test_time_to_reach(time_to_reach, tmp_path):
    for seed, (ref, val) in enumerate([([0.1, 0.3, 0.2], [0.2, 0.25, 0.3]),
                                       ([0.2, 0.1, 0.1], [0.1, 0.15])]):
        for model, curve in (('lightgcn', ref), ('mmssl', val)):
            run = tmp_path / 'runs' / f'{model}-seed{seed}'
            run.mkdir(parents=True)
            (run / 'history.json').write_text(json.dumps(
                [{'epoch': i + 1, 'val': {'recall@20': v}}
                 for i, v in enumerate(curve)]))
    times = tmp_path / 'times.json'
    times.write_text(json.dumps({'results': [
        {'config': 'lightgcn', 'seconds_per_epoch': 1.0},
        {'config': 'mmssl@x', 'seconds_per_epoch': 4.0}]}))
    with pytest.raises(SystemExit):  # 'mmssl' has no epoch time
        time_to_reach.main([str(tmp_path), str(times)])
    text = time_to_reach.main([str(tmp_path), str(times),
                               '--times', 'mmssl=mmssl@x'])
    rows = [line for line in text.splitlines() if line.startswith('| ')]
    assert 'seed 0: 0.3000 at epoch 2, seed 1: 0.2000 at epoch 1' in text
    # LightGCN: best epochs 2 and 1, 1.5 s on average. MMSSL reaches 0.3 at
    # epoch 3 of seed 0 (12 s) and never 0.2 in seed 1.
    assert rows[1] == '| lightgcn | 1.00 | 2 (2) | 1 (1) | 2 (2/2) | 1.00 |'
    assert rows[2] == '| mmssl | 4.00 | 3 (12) | - | 12 (1/2) | 8.00 |'


@pytest.fixture
def resplit():
    yield from bench('resplit')


def test_resplit_per_user_and_loads(resplit, tmp_path):
    from pyg_mmssl.data import split_edge_index
    from pyg_mmssl.datasets import MultimodalRecDataset, synthetic_multimodal
    data = synthetic_multimodal(num_users=60, num_items=40, num_clusters=4,
                                interactions_per_user=8, seed=1)
    every = torch.cat([split_edge_index(data, s)
                       for s in ('train', 'val', 'test')], dim=1)
    parts = resplit.split_per_user(every, 60, seed=3)
    # A partition of every interaction.
    key = lambda e: set((e[0] * 40 + e[1]).tolist())  # noqa: E731
    assert sum(p.size(1) for p in parts.values()) == every.size(1)
    assert set().union(*(key(p) for p in parts.values())) == key(every)
    for u in range(60):
        n = int((every[0] == u).sum())
        got = {s: int((p[0] == u).sum()) for s, p in parts.items()}
        assert got['train'] >= 1
        assert got['val'] == (max(1, round(0.1 * n)) if n >= 3 else 0)
        assert got['test'] == (max(1, round(0.1 * n)) if n >= 2 else 0)
    # Two or three interactions: one test (and one validation) item.
    few = resplit.split_per_user(torch.tensor([[0, 0, 1, 1, 1, 2],
                                               [0, 1, 0, 1, 2, 3]]), 3, 0)
    assert [p[0].tolist() for p in few.values()] == [[0, 1, 2], [1], [0, 1]]
    assert not torch.equal(parts['test'],
                           resplit.split_per_user(every, 60, 4)['test'])
    # Written in the mmssl layout, it loads through that loader.
    counts = resplit.main(['--dataset', 'synthetic', '--seed', '3', '--out',
                           str(tmp_path / 'split')])
    loaded = MultimodalRecDataset(str(tmp_path / 'split'), 'mmssl')[0]
    for s in ('train', 'val', 'test'):
        assert split_edge_index(loaded, s).size(1) == counts[s]
    assert loaded.modalities == ['image', 'text']
    with pytest.raises(SystemExit, match='not empty'):
        resplit.main(['--dataset', 'synthetic', '--seed', '3', '--out',
                      str(tmp_path / 'split')])


def test_suite_knows_every_model(suite):
    from pyg_mmssl.nn.models import MODELS
    assert sorted(suite.MODELS) == sorted(MODELS)
    assert suite.MODELS[0] == 'lightgcn'


@pytest.fixture
def tune_splits():
    yield from bench('tune_splits')


def test_tune_splits_scores_the_mean_and_resumes(tune_splits, resplit,
                                                  tmp_path, monkeypatch):
    from pyg_mmssl.train import Trainer
    pytest.importorskip('optuna')
    resplit.main(['--dataset', 'synthetic', '--seed', '3', '--out',
                  str(tmp_path / 'split')])
    space = tmp_path / 'space.json'
    space.write_text(json.dumps({'lr': {'type': 'float', 'low': 1e-3,
                                        'high': 1e-2, 'log': True}}))
    evaluate = Trainer.evaluate

    def no_test(self, split, *args, **kwargs):
        assert split != 'test', 'a study ranked the test split'
        return evaluate(self, split, *args, **kwargs)

    monkeypatch.setattr(Trainer, 'evaluate', no_test)
    argv = ['--split', 'a=synthetic', '--split', f"b={tmp_path / 'split'}",
            '--space', str(space), '--epochs', '2', '--threads', '1',
            '--preset', 'default', '--out', str(tmp_path / 'study')]
    study = tune_splits.main(argv + ['--trials', '2'])
    assert len(study.trials) == 2
    for trial in study.trials:
        a, b = trial.user_attrs['a'], trial.user_attrs['b']
        assert len(a['curve']) == len(b['curve']) == 2
        assert a['best'] == max(a['curve']) and b['best'] == max(b['curve'])
        assert trial.value == pytest.approx((a['best'] + b['best']) / 2)
        assert 1e-3 <= trial.params['lr'] <= 1e-2
    # Continued: one more trial, the first two kept.
    study = tune_splits.main(argv + ['--trials', '3'])
    assert [t.number for t in study.trials] == [0, 1, 2]
    table = (tmp_path / 'study' / 'trials.md').read_text().splitlines()
    assert table[0] == '| trial | state | lr | a val (epoch) | b val ' \
        '(epoch) | mean |' and len(table) == 5
