r"""Atomic file writes: a result or checkpoint is written to a temporary file
in the target folder and renamed over the target, so an interrupted write
never leaves a torn file or destroys the previous version."""
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


def atomic_torch_save(obj: Any, path: str) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str) -> None:
    _atomic(path, lambda f: f.write(
        (json.dumps(obj, indent=2, sort_keys=False) + '\n').encode()))
