import hashlib
import logging
import os
import os.path as osp
import stat
from typing import Any, Callable, List, Optional, Type

import torch
from torch_geometric.data import HeteroData, InMemoryDataset
from torch_geometric.data.data import BaseData

from pyg_mmssl.data.graph import (ITEM, SPLITS, USER, DataError, build_data,
                                  modality_features, split_edge_index)
from pyg_mmssl.data.formats import FORMATS, READERS, feature_files, raw_file_names
from pyg_mmssl.files import (UnreadableFile, atomic_torch_save, hash_file,
                             load_plain)

log = logging.getLogger(__name__)

CACHE_ENV = 'PYG_MMSSL_CACHE'
CACHE_VERSION = 1
# The plain values of a cache; the tensors are the splits and the features.
CACHE_VALUES = {'version': int, 'format': str, 'fingerprint': str,
                'num_users': int, 'num_items': int, 'modalities': list}


def _default_cache_root() -> str:
    return os.environ.get(CACHE_ENV) or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'),
        'pyg_mmssl')


def writable(folder: str) -> bool:
    r"""Whether ``folder`` may be written to. Mode bits as well as
    :func:`os.access`: root may write anywhere, but a folder marked
    read-only (shared data) should stay untouched."""
    return bool(os.access(folder, os.W_OK)
                and os.stat(folder).st_mode & stat.S_IWUSR)


class CacheError(ValueError):
    r"""Why a processed cache file cannot be used (it is then rebuilt)."""


def _feature_key(modality: str) -> str:
    return f'feature/{modality}'


def _foreign(cache: Any) -> Optional[str]:
    r"""Why ``cache`` (as loaded) is not a cache of :obj:`CACHE_VERSION`, if
    it is not: exact types only, so no subclass brings behaviour along."""
    if type(cache) is not dict:
        return f"holds a {type(cache).__name__}, expected a dict"
    for key, kind in CACHE_VALUES.items():
        if type(cache.get(key)) is not kind:
            return f"'{key}' is not of type {kind.__name__}"
    if cache['version'] != CACHE_VERSION:
        return (f"format version {cache['version']}, expected "
                f"{CACHE_VERSION}")
    if not all(type(m) is str for m in cache['modalities']):
        return "'modalities' is not a list of names"
    tensors = list(SPLITS) + [_feature_key(m) for m in cache['modalities']]
    for key in tensors:
        value = cache.get(key)
        if type(value) is not torch.Tensor or value.layout != torch.strided:
            return f"'{key}' is not a dense tensor"
    extra = set(cache) - set(CACHE_VALUES) - set(tensors)
    if extra:
        return f"unexpected entries {sorted(extra)}"
    return None


class MultimodalRecDataset(InMemoryDataset):
    r"""A multimodal recommendation dataset read from files in one of the
    formats of :mod:`pyg_mmssl.data.formats` (``"mmssl"``, ``"diffmm"`` or
    ``"mmrec"``), with modality features discovered as
    ``<modality>_feat.npy``. The single graph is the
    :class:`~torch_geometric.data.HeteroData` of :func:`build_data`.

    Processed data is cached in ``<root>/processed`` (or, where ``root`` is
    read-only, under ``$PYG_MMSSL_CACHE``, default ``~/.cache/pyg_mmssl``) as
    one file, ``data_<format>.pt`` (``data_mmrec_<name>.pt`` given a name),
    written atomically. The cache is a flat :obj:`dict` of tensors and plain
    values only: the user and item counts, the train / validation / test edge
    indices, one feature matrix per modality, the modality names, a format
    version and a fingerprint (SHA-256) of the raw files' names and contents.
    It is loaded with ``torch.load(weights_only=True)``, which never unpickles
    code; its entries' types are checked exactly and its contents go through
    :func:`build_data` again. A cache that is truncated or unreadable, foreign
    (another layout or version) or stale (its fingerprint is not that of the
    raw files now) is rebuilt from the raw files, with a warning. Nothing else
    in the folder is read: PyG's ``pre_transform.pt`` and ``pre_filter.pt``,
    which :class:`~torch_geometric.data.Dataset` would unpickle unsafely, are
    neither read nor written.

    Args:
        root (str): Folder with the raw files.
        format (str): ``"mmssl"``, ``"diffmm"`` or ``"mmrec"``.
        name (str, optional): For ``"mmrec"``, the ``<name>.inter`` file to
            read (needed only when the folder has several).
        processed_dir (str, optional): Where to cache processed data.
        transform (callable, optional): Applied to the data on access.
        force_reload (bool): Re-process even if a cache exists.
    """
    source_hint = ("provide the files in the layout described in "
                   "pyg_mmssl.data.formats")
    formats = FORMATS

    def __init__(self, root: str, format: str, name: Optional[str] = None,
                 processed_dir: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 force_reload: bool = False):
        if format not in self.formats:
            raise ValueError(f"unknown format '{format}', expected one of "
                             f"{self.formats}")
        if not osp.isdir(root):
            raise FileNotFoundError(f"dataset folder '{root}' does not exist; "
                                    f"{self.source_hint}")
        self.format = format
        self.name = name
        root = osp.abspath(root)
        self._processed_dir = processed_dir or self._choose_processed_dir(root)
        super().__init__(root, transform, force_reload=force_reload)
        self.data = self._load_or_process()

    @staticmethod
    def _choose_processed_dir(root: str) -> str:
        local = osp.join(root, 'processed')
        if writable(local if osp.isdir(local) else root):
            return local
        digest = hashlib.sha1(root.encode()).hexdigest()[:12]
        return osp.join(_default_cache_root(), digest)

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return self._processed_dir

    @property
    def raw_file_names(self) -> List[str]:
        names = raw_file_names(self.format, self.root)
        if self.format == 'mmrec' and self.name is not None:
            names = [f'{self.name}.inter']
        return names + [osp.basename(p)
                        for p in feature_files(self.root).values()]

    @property
    def processed_file_names(self) -> List[str]:
        suffix = f'_{self.name}' if self.name is not None else ''
        return [f'data_{self.format}{suffix}.pt']

    def _fingerprint(self) -> str:
        h = hashlib.sha256(self.format.encode())
        for path in self.raw_paths:
            h.update(osp.basename(path).encode())
            hash_file(h, path)
        return h.hexdigest()

    def download(self):
        missing = [p for p in self.raw_paths if not osp.exists(p)]
        raise FileNotFoundError(f"missing raw file(s) {missing}; "
                                f"{self.source_hint}")

    def _process(self):
        # PyG's Dataset._process unpickles processed/pre_transform.pt and
        # pre_filter.pt with weights_only=False, which runs whatever code a
        # data folder ships; __init__ calls _load_or_process instead.
        return

    def _load_or_process(self) -> HeteroData:
        path = self.processed_paths[0]
        if not self.force_reload:
            try:
                return self._read_cache(path, self._fingerprint())
            except CacheError as e:
                missing = not osp.exists(path)
                (log.info if missing else log.warning)(
                    "%s: %s; rebuilding it from the raw files", path, e)
        return self.process()

    def process(self) -> HeteroData:
        r"""Reads the raw files, writes the cache and returns the data."""
        # Fingerprint first: a raw file changing while it is read then leaves
        # a cache that is stale next time, never new data under an old print.
        fingerprint = self._fingerprint()
        data = build_data(*self._read())
        self._write_cache(data, fingerprint)
        return data

    def _read(self):
        r"""The raw files parsed: the arguments of :func:`build_data`."""
        reader = READERS[self.format]
        args = (self.root, self.name) if self.format == 'mmrec' else (
            self.root, )
        return reader(*args)

    def _write_cache(self, data: HeteroData, fingerprint: str) -> None:
        cache = {'version': CACHE_VERSION, 'format': self.format,
                 'fingerprint': fingerprint,
                 'num_users': int(data[USER].num_nodes),
                 'num_items': int(data[ITEM].num_nodes),
                 'modalities': list(data.modalities)}
        for split in SPLITS:
            cache[split] = split_edge_index(data, split)
        for modality, x in modality_features(data).items():
            cache[_feature_key(modality)] = x
        atomic_torch_save(cache, self.processed_paths[0])

    def _read_cache(self, path: str, fingerprint: str) -> HeteroData:
        if not osp.exists(path):
            raise CacheError("missing")
        try:
            cache = load_plain(path)
        except UnreadableFile as e:
            raise CacheError(f"truncated or unreadable ({e.reason})") from e
        problem = _foreign(cache)
        if problem is None and cache['format'] != self.format:
            problem = f"a '{cache['format']}' cache"
        if problem is not None:
            raise CacheError(f"foreign, not a pyg_mmssl cache ({problem})")
        if cache['fingerprint'] != fingerprint:
            raise CacheError("stale, built from raw files other than the "
                             "current ones")
        try:
            return build_data(
                cache['num_users'], cache['num_items'],
                {split: cache[split] for split in SPLITS},
                {m: cache[_feature_key(m)] for m in cache['modalities']},
                {split: f"{path} ({split})" for split in SPLITS})
        except DataError as e:
            raise CacheError(f"foreign, inconsistent contents ({e})") from e

    def load(self, path: str, data_cls: Type[BaseData] = HeteroData) -> None:
        r"""Loads the cache at :obj:`path` (see above); raises
        :class:`CacheError` if it is not a cache of the current raw files.
        Unlike :meth:`InMemoryDataset.load`, it never falls back to an unsafe
        unpickler."""
        self.data = self._read_cache(path, self._fingerprint())

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.root}, format={self.format})'
