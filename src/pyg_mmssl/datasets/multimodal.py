import hashlib
import os
import os.path as osp
import stat
from glob import glob
from typing import Callable, List, Optional

from torch_geometric.data import HeteroData, InMemoryDataset

from pyg_mmssl.data.graph import build_data
from pyg_mmssl.data.io import FORMATS, READERS, feature_files, raw_file_names

CACHE_ENV = 'PYG_MMSSL_CACHE'


def _default_cache_root() -> str:
    return os.environ.get(CACHE_ENV) or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'),
        'pyg_mmssl')


class MultimodalRecDataset(InMemoryDataset):
    r"""A multimodal recommendation dataset read from files in one of the
    formats of :mod:`pyg_mmssl.data.io` (``"mmssl"``, ``"diffmm"`` or
    ``"mmrec"``), with modality features discovered as
    ``<modality>_feat.npy``. The single graph is the
    :class:`~torch_geometric.data.HeteroData` of :func:`build_data`.

    Processed data is cached in ``<root>/processed`` (or, where ``root`` is
    read-only, under ``$PYG_MMSSL_CACHE``, default ``~/.cache/pyg_mmssl``).
    The cache file name carries a fingerprint of the raw files' contents, so
    it is rebuilt whenever a raw file changes.

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
                   "pyg_mmssl.data.io")

    def __init__(self, root: str, format: str, name: Optional[str] = None,
                 processed_dir: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 force_reload: bool = False):
        if format not in FORMATS:
            raise ValueError(f"unknown format '{format}', expected one of "
                             f"{FORMATS}")
        if not osp.isdir(root):
            raise FileNotFoundError(f"dataset folder '{root}' does not exist; "
                                    f"{self.source_hint}")
        self.format = format
        self.name = name
        root = osp.abspath(root)
        self._processed_dir = processed_dir or self._choose_processed_dir(root)
        super().__init__(root, transform, force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    @staticmethod
    def _choose_processed_dir(root: str) -> str:
        local = osp.join(root, 'processed')
        target = local if osp.isdir(local) else root
        # Mode bits as well as access(): root may write anywhere, but a folder
        # marked read-only (shared data) should stay untouched.
        if (os.access(target, os.W_OK)
                and os.stat(target).st_mode & stat.S_IWUSR):
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

    def _fingerprint(self) -> str:
        h = hashlib.sha1(self.format.encode())
        for path in self.raw_paths:
            h.update(osp.basename(path).encode())
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(1 << 22), b''):
                    h.update(block)
        return h.hexdigest()[:16]

    @property
    def processed_file_names(self) -> List[str]:
        if not hasattr(self, '_fp'):
            missing = [p for p in self.raw_paths if not osp.exists(p)]
            self._fp = 'missing' if missing else self._fingerprint()
        return [f'data_{self.format}_{self._fp}.pt']

    def download(self):
        missing = [p for p in self.raw_paths if not osp.exists(p)]
        if not feature_files(self.root):
            missing.append(osp.join(self.root, '<modality>_feat.npy'))
        raise FileNotFoundError(f"missing raw file(s) {missing}; "
                                f"{self.source_hint}")

    def process(self):
        reader = READERS[self.format]
        args = (self.root, self.name) if self.format == 'mmrec' else (
            self.root, )
        num_users, num_items, splits, feats, sources = reader(*args)
        data = build_data(num_users, num_items, splits, feats, sources)
        for stale in glob(osp.join(self.processed_dir,
                                   f'data_{self.format}_*.pt')):
            os.remove(stale)
        tmp = self.processed_paths[0] + '.tmp'
        self.save([data], tmp)
        os.replace(tmp, self.processed_paths[0])  # atomic: no torn cache

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.root}, format={self.format})'
