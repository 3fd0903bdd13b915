r"""``pyg-mmssl`` on RecBole atomic files, and ``pyg-mmssl encode``."""
import json
import re

import numpy as np
import pytest

import pyg_mmssl.tune
from pyg_mmssl.cli import main

FAST = ['--epochs', '1', '--embedding-dim', '8', '--num-layers', '1',
        '--quiet', '--device', 'cpu']


def write_folder(root, users=8, items=10):
    root.mkdir(exist_ok=True)
    rows = [f'u{u}\tm{i}\t{1 + (u + i) % 5}\t{100 * i + u}'
            for u in range(users) for i in range(items) if (u + i) % 3]
    (root / 'toy.inter').write_text(
        'user_id:token\titem_id:token\trating:float\ttimestamp:float\n'
        + '\n'.join(rows) + '\n')
    (root / 'toy.item').write_text(
        'item_id:token\ttitle:token_seq\tgenre:token_seq\n' + ''.join(
            f'm{i}\tfilm {"abc"[i % 3]}\t{"xyz"[i % 3]}\n'
            for i in range(items)))
    return root


def test_info(tmp_path, capsys):
    write_folder(tmp_path)
    assert main(['info', '--dataset', 'recbole', '--root', str(tmp_path)]) \
        == 0
    out = capsys.readouterr().out
    assert "{'genre': 3, 'title': 4}" in out
    assert re.search(r'^users +8$', out, re.M)
    assert main(['info', '--dataset', 'recbole', '--root', str(tmp_path),
                 '--split', 'temporal', '--rating-threshold', '3',
                 '--item-fields', 'genre']) == 0
    assert "{'genre': 3}" in capsys.readouterr().out
    assert (tmp_path / 'pyg_mmssl_splits' / 'toy.temporal-80-10-10.min3'
            ).is_dir()


def test_options_reach_train_evaluate_and_tune(tmp_path, capsys,
                                               monkeypatch):
    root = write_folder(tmp_path / 'data')
    out = tmp_path / 'run'
    options = ['--split-seed', '5', '--item-fields', 'genre']
    assert main(['train', '--model', 'mmgcn', '--dataset', 'recbole',
                 '--root', str(root), '--out', str(out)] + options + FAST) == 0
    meta = json.loads((out / 'metrics.json').read_text())['meta']
    assert meta['dataset_options'] == {'split_seed': 5,
                                       'item_fields': ['genre']}
    assert (root / 'pyg_mmssl_splits' / 'toy.random-80-10-10.seed5').is_dir()
    # The checkpoint reloads the data with the same options.
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(out / 'best.pt'),
                 '--json']) == 0
    assert 'recall@20' in capsys.readouterr().out
    # recommend names the users and items as the files do.
    assert main(['recommend', '--checkpoint', str(out / 'best.pt'),
                 '--user', '0', '--k', '3']) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith('user 0 (u0): ')
    pairs = [p.split(':') for p in line.split(': ', 1)[1].split()]
    assert len(pairs) == 3 and all(name == f'm{i}' for i, name in pairs)
    assert main(['train', '--model', 'mmgcn', '--dataset', 'recbole',
                 '--root', str(root), '--out', str(out), '--resume',
                 '--epochs', '2', '--split-seed', '6']) == 2
    assert 'dataset options' in capsys.readouterr().err

    seen = {}

    def fake_tune(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError('stop')

    monkeypatch.setattr(pyg_mmssl.tune, 'tune', fake_tune)
    assert main(['tune', '--model', 'lightgcn', '--dataset', 'recbole',
                 '--root', str(root), '--trials', '1', '--out',
                 str(tmp_path / 'study'), '--split', 'temporal']) == 2
    assert seen['options'] == {'split': 'temporal'}


@pytest.mark.parametrize('flags, message', [
    (['--dataset', 'mmrec', '--split-seed', '1'],
     '--split-seed applies to the recbole and ml-100k datasets only'),
    (['--dataset', 'recbole', '--item-fields', 'plot'],
     "no item field 'plot'"),
    (['--dataset', 'recbole', '--name', 'nope'], 'nope.inter'),
])
def test_bad_input_is_one_line(tmp_path, flags, message, one_line_error):
    write_folder(tmp_path)
    assert main(['info', '--root', str(tmp_path)] + flags) == 2
    one_line_error(message)


def test_bad_row_is_one_line(tmp_path, one_line_error):
    write_folder(tmp_path)
    with open(tmp_path / 'toy.inter', 'a') as f:
        f.write('u1\tm1\t5\n')
    assert main(['info', '--dataset', 'recbole', '--root', str(tmp_path)]) \
        == 2
    line = one_line_error('expected 4 tab-separated fields, got 3')
    assert 'toy.inter, line' in line


def test_encode_text_end_to_end(tmp_path, tiny_sentence_model, capsys,
                                one_line_error):
    write_folder(tmp_path)
    out = tmp_path / 'title_feat.npy'
    argv = ['encode', 'text', '--items', str(tmp_path / 'toy.item'),
            '--column', 'title', '--model', tiny_sentence_model, '--out',
            str(out), '--device', 'cpu', '--quiet']
    assert main(argv) == 0
    assert '10 items x 8 float32' in capsys.readouterr().out
    x = np.load(out)
    assert x.shape == (10, 8) and x.dtype == np.float32
    assert main(argv) == 0  # its own output: kept as it is
    assert np.array_equal(np.load(out), x)
    # The loader takes the file in place of the title words.
    assert main(['info', '--dataset', 'recbole', '--root', str(tmp_path)]) \
        == 0
    assert "{'genre': 3, 'title': 8}" in capsys.readouterr().out
    argv[argv.index('--column') + 1] = 'plot'
    assert main(argv) == 2
    one_line_error("no column 'plot'")
    assert main(argv[:2] + ['--items', str(tmp_path / 'nope.item'),
                            '--column', 'title', '--out', str(out)]) == 2
    one_line_error("'" + str(tmp_path / 'nope.item') + "' does not exist")
