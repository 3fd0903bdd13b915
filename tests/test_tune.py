r"""``pyg-mmssl tune`` on the synthetic dataset: reports, resuming, the
test split never ranked, search spaces, and ``train --config``."""
import csv
import json

import pytest

from pyg_mmssl.cli import main
from pyg_mmssl.presets import MODEL_CONFIGS
from pyg_mmssl.tune import SPACES, check_space, default_space

optuna = pytest.importorskip('optuna')

SPACE = {
    'lr': {'type': 'float', 'low': 1e-3, 'high': 1e-2, 'log': True},
    'num_layers': {'type': 'int', 'low': 1, 'high': 2},
    'embedding_dim': 8,  # fixed: small and fast
}


def tune_args(out, space_file, trials=3, *extra):
    return ['tune', '--model', 'lightgcn', '--dataset', 'synthetic',
            '--trials', str(trials), '--epochs', '2', '--device', 'cpu',
            '--space', str(space_file), '--out', str(out), *extra]


def rows(out):
    with open(out / 'trials.csv') as f:
        return list(csv.DictReader(f))


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / 'space.json'
    path.write_text(json.dumps(SPACE))
    return path


@pytest.fixture
def splits(monkeypatch):
    r"""The splits the trainer ranks, in order; ranking test raises."""
    import pyg_mmssl.train as train
    seen = []
    evaluate_split = train.evaluate_split

    def counted(model, split, *args, **kwargs):
        seen.append(split)
        assert split != 'test', 'a study ranked the test split'
        return evaluate_split(model, split, *args, **kwargs)

    monkeypatch.setattr(train, 'evaluate_split', counted)
    return seen


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    r"""A finished 3-trial study (written once for the tests that read
    it)."""
    root = tmp_path_factory.mktemp('study')
    (root / 'space.json').write_text(json.dumps(SPACE))
    out = root / 'study'
    assert main(tune_args(out, root / 'space.json')) == 0
    return out


def test_tune_writes_best_table_and_plot_and_never_ranks_test(
        tmp_path, space_file, splits, capsys):
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file)) == 0
    assert 'test' not in splits
    # Every epoch of every trial and each trial's best model: 3 x (2 + 1).
    assert splits == ['val'] * 9
    best = json.loads((out / 'best.json').read_text())
    table = rows(out)
    assert [r['trial'] for r in table] == ['0', '1', '2']
    assert {r['state'] for r in table} == {'complete'}
    assert {'lr', 'num_layers', 'epochs', 'seconds', 'value'} <= set(table[0])
    values = [float(r['value']) for r in table]
    assert best['study']['value'] == pytest.approx(max(values))
    assert best['study']['trial'] == values.index(max(values))
    assert best['study']['trials'] == 3
    assert best['model'] == 'lightgcn' and best['dataset'] == 'synthetic'
    assert best['model_config']['embedding_dim'] == 8
    winner = table[best['study']['trial']]
    assert best['train_config']['lr'] == pytest.approx(float(winner['lr']))
    assert best['model_config']['num_layers'] == int(winner['num_layers'])
    assert best['train_config']['seed'] == best['study']['trial']  # seed 0 + n
    assert 'device' not in best['train_config']
    md = (out / 'trials.md').read_text().splitlines()
    assert md[0].startswith('| trial | state | value |') and len(md) == 5
    assert (out / 'history.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'best validation Recall@20' in capsys.readouterr().out


def test_interrupted_study_resumes(tmp_path, space_file, monkeypatch,
                                   capsys):
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file, 2)) == 0
    # A process killed mid-trial leaves a trial running in the storage ...
    storage = f"sqlite:///{out / 'study.db'}"
    optuna.load_study(study_name='lightgcn-synthetic', storage=storage).ask()
    # ... and Ctrl-C stops a trial at its first validation.
    import pyg_mmssl.train as train

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(train, 'evaluate_split', interrupt)
        assert main(tune_args(out, space_file, 3)) == 130
    assert 'a study continues when the same command runs again' in \
        capsys.readouterr().err
    states = [(r['state'], r['note']) for r in rows(out)]
    assert states == [('complete', '')] * 2 + [('fail', 'interrupted')] * 2
    assert main(tune_args(out, space_file, 3)) == 0
    assert '3 trials (1 started now)' in capsys.readouterr().out
    assert [r['state'] for r in rows(out)] == ['complete'] * 2 + \
        ['fail'] * 2 + ['complete']
    # A study that holds its trials only rewrites the reports.
    assert main(tune_args(out, space_file, 3)) == 0
    assert '(0 started now)' in capsys.readouterr().out
    assert json.loads((out / 'best.json').read_text())['study']['trials'] == 3


def test_jobs_run_trials_in_parallel(tmp_path, space_file, capsys):
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file, 2, '--jobs', '2')) == 0
    assert [r['state'] for r in rows(out)] == ['complete'] * 2
    assert (out / 'best.json').exists()


def test_pruned_trials_are_recorded(tmp_path, space_file, monkeypatch,
                                    one_line_error):
    import pyg_mmssl.tune.study as study
    # A pruner that stops every trial at its first validation.
    monkeypatch.setattr(study, 'default_pruner',
                        lambda: optuna.pruners.ThresholdPruner(lower=2.))
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file, 2)) == 1
    one_line_error("no trial of the study in")
    table = rows(out)
    assert [r['state'] for r in table] == ['pruned'] * 2
    assert table[0]['note'].startswith('pruned at epoch 1 (val recall@20')
    assert table[0]['epochs'] == '1'
    assert not (out / 'best.json').exists()


def test_timeout_starts_no_trial_after_it(tmp_path):
    from pyg_mmssl.tune import tune
    result = tune('lightgcn', 'synthetic', 50, str(tmp_path), space=SPACE,
                  epochs=1, device='cpu', timeout=2.)
    assert 1 <= result.ran == result.trials < 50


def test_train_config_reproduces_the_best_trial(study, tmp_path):
    best = json.loads((study / 'best.json').read_text())
    base = ['train', '--model', 'lightgcn', '--dataset', 'synthetic',
            '--config', str(study / 'best.json'), '--device', 'cpu',
            '--quiet']
    assert main(base + ['--out', str(tmp_path / 'run')]) == 0
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert metrics['meta']['model_config'] == best['model_config']
    config = {k: v for k, v in metrics['config'].items()
              if k not in ('device', 'quiet')}
    assert config == best['train_config']
    assert metrics['val']['recall@20'] == pytest.approx(best['study']['value'],
                                                        abs=1e-6)
    # Flags override the file.
    assert main(base + ['--out', str(tmp_path / 'flags'), '--lr', '0.02',
                        '--num-layers', '3', '--epochs', '1']) == 0
    metrics = json.loads((tmp_path / 'flags' / 'metrics.json').read_text())
    assert metrics['config']['lr'] == 0.02 and metrics['epochs_run'] == 1
    assert metrics['meta']['model_config']['num_layers'] == 3
    assert metrics['meta']['model_config']['embedding_dim'] == 8


@pytest.mark.parametrize('space,message', [
    ({'lrr': 1e-3}, "unknown option 'lrr': not an option of model "
     "'lightgcn' nor a searchable training option; did you mean 'lr'?"),
    ({'epochs': {'type': 'int', 'low': 1, 'high': 9}},
     "'epochs' cannot be searched, a study keeps it fixed"),
    ({'num_layers': {'type': 'float', 'low': 1, 'high': 3}},
     "'num_layers' cannot take type 'float' (use 'int' or 'categorical')"),
    ({'lr': {'type': 'float', 'low': 1e-2, 'high': 1e-3}},
     "'lr': 'low' (0.01) must be below 'high' (0.001)"),
    ({'reg': {'type': 'float', 'low': 0, 'high': 1, 'log': True}},
     "'reg': a log range needs 'low' > 0"),
    ({'lr': {'type': 'float', 'low': 1e-3, 'hihg': 1}},
     "'lr': unknown key 'hihg' for type 'float'"),
    ({'lr': {'low': 1e-3, 'high': 1}}, "'lr' needs a 'type'"),
    ({'optimizer': {'type': 'categorical', 'choices': ['adam', 'sgd']}},
     "unknown optimizer 'sgd', expected 'adam' or 'adamw'"),
    ({'combine': 'add'}, "unknown option 'combine'"),
    ({'num_layers': {'type': 'categorical', 'choices': [1, 'two']}},
     "'num_layers' must be an integer, got 'two'"),
])
@pytest.mark.parametrize('suffix', ['.json', '.yaml'])
def test_bad_space_file_is_one_line(space, message, suffix, tmp_path,
                                    one_line_error):
    import yaml
    path = tmp_path / f'space{suffix}'
    path.write_text(json.dumps(space) if suffix == '.json' else
                    yaml.safe_dump(space))
    out = tmp_path / 'study'
    assert main(tune_args(out, path)) == 2
    one_line_error(f"error: space file '{path}': {message}")
    assert not out.exists()  # checked before anything runs


def test_default_spaces_cover_every_model():
    from pyg_mmssl.nn.models import MODELS
    learning = {m for m in MODEL_CONFIGS if MODELS[m].trainable}
    assert set(SPACES) == learning == set(MODEL_CONFIGS) - {'mostpop'}
    for model in learning:
        space = default_space(model)
        assert 'lr' in space and space == check_space(space, model)
    assert set(default_space('mmssl')) >= {'cl_rate', 'g_rate', 'lambda_f',
                                           'lambda_id', 'topk_rate',
                                           'refresh_every', 'reg', 'dropout',
                                           'adversarial', 'learned_graph',
                                           'graph_beta', 'learned_weight'}


@pytest.mark.parametrize('model', ['mmgcn', 'mmssl', 'freedom', 'bm3'])
def test_every_model_is_tunable(model, tmp_path):
    from pyg_mmssl.tune import tune
    space = {**default_space(model), 'embedding_dim': 8, 'batch_size': 4096}
    if model == 'mmssl':  # the critic's steps are slow on 2 CPU cores
        space['adversarial'] = False
    result = tune(model, 'synthetic', 1, str(tmp_path), space=space,
                  epochs=1, device='cpu')
    assert result.trials == result.ran == 1
    searched = {k for k, v in space.items() if isinstance(v, dict)}
    assert searched <= set(rows(tmp_path)[0])
    assert set(default_space(model)) - searched == (
        {'adversarial', 'refresh_every'} if model == 'mmssl' else set())
    assert result.best['model_config']['embedding_dim'] == 8


def test_a_model_without_parameters_is_not_tuned(tmp_path,
                                                 one_line_error):
    assert main(['tune', '--model', 'mostpop', '--dataset', 'synthetic',
                 '--trials', '2', '--out', str(tmp_path / 'out')]) == 2
    one_line_error("error: mostpop has no parameters and nothing to tune: "
                   "pyg-mmssl train --model mostpop evaluates it")
    assert not (tmp_path / 'out').exists()


def test_a_study_continues_only_with_its_options(study, tmp_path,
                                                 one_line_error):
    space = tmp_path / 'space.json'
    space.write_text(json.dumps(SPACE))
    args = tune_args(study, space)
    args[args.index('--epochs') + 1] = '3'
    assert main(args) == 2
    one_line_error("holds a study with train_config.epochs=2, this call asks "
                   "for 3: continue it with the same options, or pass "
                   "another --out")
    other = ['tune', '--model', 'mmgcn'] + args[3:]
    assert main(other) == 2
    one_line_error("holds the study 'lightgcn-synthetic'; pass another --out "
                   "for mmgcn-synthetic")


@pytest.mark.parametrize('content,message', [
    ({'model': 'mmgcn'}, "is for model 'mmgcn'; this run asks for --model "
     "lightgcn"),
    ({'models': 'lightgcn'}, "unknown key 'models' (expected model, "
     "dataset, preset, model_config, train_config, study)"),
    ({'model_config': {'combine': 'add'}}, "'combine' in 'model_config' is "
     "not an option of model 'lightgcn'"),
    ({'train_config': {'lr': 'fast'}}, "'lr' must be a number, got 'fast'"),
    ({'preset': 'amazon'}, "unknown preset 'amazon' for model 'lightgcn'"),
])
def test_bad_train_config_is_one_line(content, message, tmp_path,
                                      one_line_error):
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(content))
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--config', str(path), '--out', str(tmp_path / 'run')]) == 2
    assert one_line_error(message).startswith(
        f"error: config file '{path}'")
    assert not (tmp_path / 'run').exists()


def test_config_does_not_apply_with_resume(study, tmp_path, one_line_error):
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--config', str(study / 'best.json'), '--resume', '--out',
                 str(tmp_path)]) == 2
    one_line_error("--config does not apply with --resume")


def test_every_tune_flag_has_help_with_its_default():
    from pyg_mmssl.cli import build_parser
    parser = build_parser()
    tune = parser._subparsers._group_actions[0].choices['tune']
    flags = [a for a in tune._actions if a.option_strings and
             a.dest != 'help']
    assert len(flags) == 21  # 16 + the five recbole loader options
    for action in flags:
        assert 'default' in action.help, action.option_strings


def test_a_worker_error_stops_the_workers_and_is_raised(tmp_path):
    from pyg_mmssl.tune.study import _run_workers, _storage
    _storage(str(tmp_path))  # the file, with no study: workers fail on it
    job = {'jobs': 2, 'out': str(tmp_path), 'root': None, 'setup': {
        'model': 'lightgcn', 'dataset': 'synthetic', 'inter': None}}
    with pytest.raises(KeyError):  # optuna's, raised here
        _run_workers(job)


def test_enqueued_configurations_run_first(tmp_path, space_file):
    first = tmp_path / 'first.json'
    first.write_text(json.dumps([{'lr': 0.005, 'num_layers': 2},
                                 {'lr': 0.002}]))
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file, 3, '--enqueue', str(first))) == 0
    got = rows(out)
    assert len(got) == 3  # the enqueued ones count among --trials
    assert (float(got[0]['lr']), int(got[0]['num_layers'])) == (0.005, 2)
    assert float(got[1]['lr']) == 0.002  # num_layers sampled
    assert float(got[2]['lr']) not in (0.005, 0.002)


@pytest.mark.parametrize('content,message', [
    ([{'reg': 1e-3}], "configuration 0: 'reg' is not searched by the space "
     "(searched: lr, num_layers)"),
    ([{'lr': 0.5}], "configuration 0: lr=0.5 is outside the space's range "
     "[0.001, 0.01]"),
    ([{'lr': 0.005}, {'num_layers': 3}], "configuration 1: num_layers=3 is "
     "outside the space's range [1, 2]"),
    ({'lr': 0.005}, "must be a list of {option: value} objects"),
])
def test_bad_enqueue_file_is_one_line(content, message, tmp_path, space_file,
                                      one_line_error):
    path = tmp_path / 'first.json'
    path.write_text(json.dumps(content))
    out = tmp_path / 'study'
    assert main(tune_args(out, space_file, 1, '--enqueue', str(path))) == 2
    one_line_error(f"error: enqueue file '{path}', {message}"
                   if 'configuration' in message else
                   f"error: enqueue file '{path}' {message}")
    assert not out.exists()
