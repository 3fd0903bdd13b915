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
                 '0.01', '--no-gumbel', '--adversarial'] + FAST) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    cfg = metrics['meta']['model_config']
    assert cfg['critic'] == 'lowrank' and cfg['gumbel'] is False
    assert cfg['adversarial'] is True  # the preset's is off
    assert cfg['embedding_dim'] == 8
    history = json.loads((out / 'history.json').read_text())
    assert {'bpr', 'cl', 'adv', 'd'} <= set(history[0])
    capsys.readouterr()
    assert main(['compare', str(out)]) == 0
    assert 'mmssl (lowrank critic)' in capsys.readouterr().out


@pytest.mark.parametrize('flags,preset,expected', [
    ([], None, False), (['--adversarial'], None, True),
    ([], 'tiktok-paper', True), (['--no-adversarial'], 'tiktok-paper', False),
])
def test_boolean_options_turn_on_and_off_over_the_preset(flags, preset,
                                                         expected, tmp_path):
    argv = ['train', '--model', 'mmssl', '--dataset', 'synthetic', '--out',
            str(tmp_path / 'run')] + flags + FAST
    if preset:
        argv += ['--preset', preset]
    assert main(argv) == 0
    cfg = json.loads((tmp_path / 'run' / 'metrics.json').read_text())[
        'meta']['model_config']
    assert cfg['adversarial'] is expected


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


@pytest.mark.parametrize('model,flags', [
    ('freedom', ['--knn-k', '5', '--modality-weights', 'image=1,text=2',
                 '--resample-every', '3']),
    ('bm3', ['--target-dropout', '0.5', '--no-finetune-features']),
])
def test_train_resume_evaluate_freedom_and_bm3(model, flags, tmp_path,
                                               capsys):
    out = tmp_path / model
    args = ['train', '--model', model, '--dataset', 'synthetic', '--out',
            str(out)] + flags + FAST
    assert main(args) == 0
    cfg = json.loads((out / 'metrics.json').read_text())['meta'][
        'model_config']
    assert cfg['embedding_dim'] == 8 and cfg['num_layers'] == 1
    if model == 'freedom':
        assert (cfg['knn_k'], cfg['modality_weights'],
                cfg['resample_every']) == (5, 'image=1,text=2', 3)
    else:
        assert (cfg['target_dropout'], cfg['finetune_features']) == (0.5,
                                                                     False)
    args[args.index('--epochs') + 1] = '3'
    assert main(args + ['--resume']) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 3
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(out / 'best.pt'), '--json',
                 '--device', 'cpu']) == 0
    res = json.loads(capsys.readouterr().out)
    assert res['test']['recall@20'] == pytest.approx(
        metrics['test']['recall@20'])


def test_same_seed_same_result(tmp_path):
    results = []
    for name in ('a', 'b'):
        assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                     '--out', str(tmp_path / name), '--seed', '3'] + FAST) == 0
        results.append(json.loads((tmp_path / name / 'metrics.json')
                                  .read_text())['test'])
    assert results[0] == results[1]


def test_every_train_flag_has_help_with_its_default():
    from pyg_mmssl.cli import build_parser
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices['train']
    flags = [a for a in train._actions if a.option_strings and
             a.dest != 'help']
    assert len(flags) > 45
    for action in flags:
        text = action.help or ''
        assert 'default' in text, action.option_strings
    helps = {a.option_strings[0]: a.help for a in flags}
    assert 'Learning rate' in helps['--lr'] and '0.00054' in helps['--lr']
    assert '(default: 1000)' in helps['--epochs']
    assert 'mmssl only' in helps['--g-rate']
    assert 'lightgcn 3, mmgcn 2, mmssl 3' in helps['--num-layers']
    assert 'mmssl on tiktok-paper 2' in helps['--num-layers']


def test_docstring_defaults_match_the_configs():
    # The help text's descriptions come from the docstrings, its defaults
    # from the configs: the two must not drift apart.
    import dataclasses
    from pyg_mmssl.nn.models import MODELS
    from pyg_mmssl.presets import MODEL_CONFIGS, arg_docs
    from pyg_mmssl.train import TrainConfig
    pairs = [(TrainConfig, TrainConfig)] + [
        (MODELS[m], c) for m, c in MODEL_CONFIGS.items()]
    for documented, config in pairs:
        docs = arg_docs(documented)
        for f in dataclasses.fields(config):
            assert f.name in docs, (documented.__name__, f.name)
            if '(default: ' in docs[f.name]:
                text = docs[f.name].rsplit('(default: ', 1)[1][:-1]
                assert text.strip('"') == str(f.default) or \
                    float(text) == f.default, (f.name, text, f.default)


@pytest.mark.parametrize('argv,message', [
    (['--device', 'gpu'], "unknown device 'gpu': expected 'auto', 'cpu', "
     "'cuda' or 'cuda:N'"),
    (['--preset', 'nope'], "unknown preset 'nope' for model 'lightgcn', "
     "expected one of ['default', 'tiktok']"),
])
def test_bad_train_options_are_one_line(argv, message, tmp_path,
                                        one_line_error):
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--out', str(tmp_path / 'run')] + argv) == 2
    one_line_error(message)
    assert not (tmp_path / 'run').exists()  # nothing trained


@pytest.mark.parametrize('argv,message', [
    (['--nproc', '0'], "argument --nproc: must be positive, got 0"),
    (['--ks', '10', '-5'], "argument --ks: must be positive, got -5"),
    (['--nproc', 'two'], "expected a positive integer, got 'two'"),
])
def test_non_positive_counts_are_usage_errors(argv, message, one_line_error):
    with pytest.raises(SystemExit) as info:
        main(['train', '--model', 'lightgcn', '--dataset', 'synthetic'] +
             argv)
    assert info.value.code == 2
    one_line_error(message)


def test_debug_works_before_and_after_the_subcommand():
    for argv in (['--debug', 'info', '--dataset', 'mmssl'],
                 ['info', '--dataset', 'mmssl', '--debug']):
        with pytest.raises(ValueError, match="pass --root DIR"):
            main(argv)


def test_out_that_is_a_file_or_holds_a_run_file(tmp_path, one_line_error):
    (tmp_path / 'file').write_text('mine')
    base = ['train', '--model', 'lightgcn', '--dataset', 'synthetic']
    assert main(base + ['--out', str(tmp_path / 'file')] + FAST) == 2
    one_line_error("is a file")
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'history.json').write_text('[]')
    assert main(base + ['--out', str(tmp_path / 'run')] + FAST) == 2
    one_line_error("already holds a run (history.json)")
    assert (tmp_path / 'run' / 'history.json').read_text() == '[]'
    assert main(base + ['--out', str(tmp_path / 'file' / 'sub')] + FAST) == 2
    one_line_error("cannot write to output folder")
    assert (tmp_path / 'file').read_text() == 'mine'


def test_non_finite_loss_exits_non_zero_with_one_line(tmp_path,
                                                      one_line_error):
    out = tmp_path / 'run'
    assert main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--out', str(out), '--lr', '1e30'] + FAST) == 1
    one_line_error("is nan at epoch 1, step 2 of")
    assert not any(out.iterdir())  # the first epoch never ended


def test_resume_takes_the_checkpoints_options(tmp_path, capsys,
                                              one_line_error):
    out = tmp_path / 'run'
    base = ['train', '--model', 'lightgcn', '--dataset', 'synthetic',
            '--out', str(out)]
    assert main(base + FAST) == 0
    # Without repeating the model options: the checkpoint's are used.
    assert main(base + ['--resume', '--epochs', '3', '--quiet']) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['epochs_run'] == 3
    assert metrics['meta']['model_config']['embedding_dim'] == 8
    capsys.readouterr()
    for argv, message in (
            (['--embedding-dim', '16'], "was trained with --embedding-dim 8; "
             "this run asks for 16"),
            (['--preset', 'default'], "--preset does not apply with "
             "--resume")):
        assert main(base + ['--resume', '--epochs', '4'] + argv) == 2
        one_line_error(message)
    other = ['train', '--model', 'mmgcn', '--dataset', 'synthetic', '--out',
             str(out), '--resume']
    assert main(other) == 2
    one_line_error("was trained with --model lightgcn; this run asks for "
                   "--model mmgcn")
    (out / 'best.pt').write_bytes(b'\x80\x02torn')
    assert main(base + ['--resume', '--epochs', '4']) == 2
    one_line_error("best.pt' is not a pyg-mmssl checkpoint")


def test_checkpoint_payload_never_runs(tmp_path, one_line_error):
    import os
    import torch
    marker = tmp_path / 'marker'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    torch.save({'meta': Payload(), 'model': {}}, tmp_path / 'evil.pt')
    assert main(['evaluate', '--checkpoint', str(tmp_path / 'evil.pt')]) == 2
    one_line_error("is not a pyg-mmssl checkpoint (it holds objects other "
                   "than tensors and plain values")
    assert not marker.exists()


def test_recommend_k_beyond_admissible_items(trained, capsys):
    from pyg_mmssl.datasets import synthetic_multimodal
    from pyg_mmssl.data import split_edge_index
    data = synthetic_multimodal()
    train = split_edge_index(data, 'train')
    seen = set(train[1, train[0] == 3].tolist())
    num_items = data['item'].num_nodes
    capsys.readouterr()
    assert main(['recommend', '--checkpoint', str(trained / 'best.pt'),
                 '--user', '3', '--k', str(num_items + 5), '--device',
                 'cpu']) == 0
    captured = capsys.readouterr()
    items = list(map(int, captured.out.split(':')[1].split()))
    assert len(items) == len(set(items)) == num_items - len(seen)
    assert not set(items) & seen
    assert (f"user 3 has only {num_items - len(seen)} item(s) it has not "
            f"trained on") in captured.err


def test_mostpop_is_evaluated_without_training(tmp_path, capsys):
    out = tmp_path / 'mostpop'
    assert main(['train', '--model', 'mostpop', '--dataset', 'synthetic',
                 '--out', str(out), '--quiet', '--device', 'cpu']) == 0
    assert 'nothing to train (no parameters)' in capsys.readouterr().out
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['best_epoch'] == metrics['epochs_run'] == 0
    assert main(['evaluate', '--checkpoint', str(out / 'best.pt'), '--json',
                 '--device', 'cpu']) == 0
    res = json.loads(capsys.readouterr().out)
    assert res['test']['recall@20'] == pytest.approx(
        metrics['test']['recall@20'])
