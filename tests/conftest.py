import os.path as osp

import pytest
import torch

from pyg_mmssl.datasets import default_tiktok_root, synthetic_multimodal

# Tests taking the ``device`` fixture run once per device present: on CPU
# always, on CUDA as well where a GPU is visible (PyG's ``withDevice`` idea).
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (compares CPU and CUDA results)")
    return torch.device('cuda')


@pytest.fixture
def assert_critic_gradient():
    r"""Checks one critic parameter's gradient from the critic loss: non-zero,
    except on the output bias, which cancels in
    :math:`E[D(fake)] - E[D(real)]` (zero up to rounding: exactly zero on
    CUDA)."""
    def check(critic, name, grad):
        assert grad is not None, name
        if name == f'head.{len(critic.head) - 1}.bias':
            assert grad.abs().max() < 1e-6, name
        else:
            assert grad.abs().sum() > 0, name
    return check


@pytest.fixture
def one_line_error(capsys):
    r"""Checks that the command just run printed ``text`` on stderr, in
    one line and without a traceback; returns that line."""
    def check(text: str) -> str:
        err = capsys.readouterr().err
        assert text in err, err
        assert 'Traceback' not in err and len(err.strip().splitlines()) == \
            1, err
        return err.strip()
    return check


@pytest.fixture
def tiny_data():
    return synthetic_multimodal(num_users=60, num_items=40, num_clusters=4,
                                interactions_per_user=8,
                                modality_dims={'image': 8, 'text': 6}, seed=1)


@pytest.fixture(scope='session')
def tiny_sentence_model(tmp_path_factory):
    r"""A random 8-d sentence-transformers model (a one-layer BERT with a
    vocabulary of letters, mean pooling) in a folder, built offline."""
    pytest.importorskip('sentence_transformers',
                        reason='needs the encode extra '
                        '(sentence-transformers)')
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizer
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import (
            Pooling, Transformer)
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    root = tmp_path_factory.mktemp('tiny_model')
    bert_dir, out = root / 'bert', root / 'st'
    bert_dir.mkdir()
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'film',
             *'abcdefghijklmnopqrstuvwxyz']
    (bert_dir / 'vocab.txt').write_text('\n'.join(vocab) + '\n')
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=8,
                         num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=64)
              ).save_pretrained(bert_dir)
    BertTokenizer(vocab_file=str(bert_dir / 'vocab.txt')).save_pretrained(
        bert_dir)
    word = Transformer(str(bert_dir))
    dim = getattr(word, 'get_embedding_dimension', None) or \
        word.get_word_embedding_dimension
    pool = Pooling(dim(), 'mean')
    SentenceTransformer(modules=[word, pool]).save(str(out))
    return str(out)


@pytest.fixture(scope='session')
def tiktok_root():
    root = default_tiktok_root()
    if not osp.exists(osp.join(root, 'trnMat.pkl')):
        pytest.skip(f"TikTok data not found at '{root}' (set "
                    f"PYG_MMSSL_TIKTOK to the folder with trnMat.pkl)")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    # Processed caches of read-only folders go to a per-test location.
    monkeypatch.setenv('PYG_MMSSL_CACHE', str(tmp_path / 'cache'))
