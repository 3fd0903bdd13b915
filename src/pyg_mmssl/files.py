r"""Writing and reading run files safely.

Writes are atomic: a result or checkpoint is written to a temporary file in
the target folder and renamed over the target, so an interrupted write never
leaves a torn file or destroys the previous version. Reads of ``torch.save``
files unpickle tensors and plain values only (``weights_only=True``), so a
file cannot run code when it is loaded."""
import hashlib
import json
import os
import os.path as osp
import tempfile
from typing import Any

import torch


def _atomic(path: str, write) -> None:
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def hash_file(h: Any, path: str) -> None:
    r"""Feeds the bytes of ``path`` to the :mod:`hashlib` object ``h``, in
    blocks (never the whole file in memory)."""
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            h.update(block)


def file_sha256(path: str) -> str:
    r"""The SHA-256 hex digest of the bytes of ``path``."""
    h = hashlib.sha256()
    hash_file(h, path)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: str) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + '\n', path)


def atomic_write_text(text: str, path: str) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_bytes(data: bytes, path: str) -> None:
    _atomic(path, lambda f: f.write(data))


CHECKPOINT_KEYS = ('meta', 'model')


class UnreadableFile(ValueError):
    r"""A ``torch.save`` file that could not be loaded as tensors and plain
    values; :attr:`reason` says why, in one line."""
    def __init__(self, path: str, reason: str):
        super().__init__(f"'{path}': {reason}")
        self.reason = reason


def load_plain(path: str, map_location: Any = 'cpu') -> Any:
    r"""``torch.load`` with ``weights_only=True``: tensors and plain Python
    values only, never code. Any failure (another format, a truncated file,
    objects that would need unpickling) raises :class:`UnreadableFile`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types, with long messages
        text = str(e).strip()
        if 'Weights only load failed' in text:
            reason = ('it holds objects other than tensors and plain values, '
                      'which are never unpickled since that could run code')
        else:
            first = text.splitlines()[0][:120] if text else ''
            reason = f"unreadable: {type(e).__name__}" + (
                f": {first}" if first else '')
        raise UnreadableFile(path, reason) from e


class CheckpointError(ValueError):
    r"""A file that is not a pyg-mmssl checkpoint; :attr:`reason` says
    why."""
    def __init__(self, path: str, reason: str):
        super().__init__(f"'{path}' is not a pyg-mmssl checkpoint ({reason})")
        self.reason = reason


def read_checkpoint(path: str, map_location: Any = 'cpu',
                    required: tuple = CHECKPOINT_KEYS) -> dict:
    r"""Loads a checkpoint written by :class:`~pyg_mmssl.train.Trainer`.

    Only tensors and plain Python values are unpickled
    (``weights_only=True``): a checkpoint cannot run code when loaded. A
    missing file raises :class:`FileNotFoundError`; a file that is not such a
    checkpoint (another format, truncated, or lacking one of the
    ``required`` keys) raises one line of :class:`CheckpointError`."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        ckpt = load_plain(path, map_location)
    except UnreadableFile as e:
        raise CheckpointError(path, e.reason) from e
    missing = [k for k in required
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(path, f"no '{missing[0]}' entry")
    return ckpt
