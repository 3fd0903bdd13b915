import hashlib
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence

from torch_geometric.data import HeteroData

from pyg_mmssl.data.formats import feature_files, raw_file_names
from pyg_mmssl.data.graph import build_data
from pyg_mmssl.data.recbole import (GROUPLENS_FILES, SPLIT_DIR, read_grouplens,
                                    read_id_tokens, read_recbole)
from pyg_mmssl.data.split import (DEFAULT_RATIOS, SPLIT_META,
                                  check_split_options, split_key)
from pyg_mmssl.datasets.multimodal import MultimodalRecDataset, writable

ML100K_ENV = 'PYG_MMSSL_ML100K'
ML100K_NAME = 'ml-100k'


class RecBoleDataset(MultimodalRecDataset):
    r"""Implicit feedback from RecBole's atomic files (``format="recbole"``:
    ``<name>.inter``, optionally ``<name>.item``) or from GroupLens'
    MovieLens-100K files (``format="grouplens"``: ``u.data``, optionally
    ``u.item``), split per user, with item fields and
    ``<modality>_feat.npy`` files as modalities
    (:mod:`pyg_mmssl.data.recbole` and :mod:`pyg_mmssl.data.split`).

    The split is written once into ``<root>/pyg_mmssl_splits/<key>``, a
    folder named after the options that change it (or under the cache
    folder when ``root`` is read-only), and read back on later runs. The
    processed cache is ``data_<format>_<name>_<options hash>.pt``; its
    fingerprint covers the raw files, the options and the split.

    Args:
        root (str): Folder with the files.
        format (str): ``"recbole"`` or ``"grouplens"``. (default:
            :obj:`"recbole"`)
        name (str, optional): For ``"recbole"``, reads ``<name>.inter`` and
            ``<name>.item``. (default: :obj:`None`, the only ``.inter``
            file, else the one named after the folder)
        split (str): ``"random"`` (per user, seeded) or ``"temporal"`` (per
            user, by timestamp). (default: :obj:`"random"`)
        split_seed, rating_threshold, item_fields, ratios: The rest of the
            split and the modalities, as
            :func:`~pyg_mmssl.data.recbole.read_recbole` takes them.
            (default: seed :obj:`0`, every interaction, every
            ``float_seq`` and ``token_seq`` field, :obj:`(0.8, 0.1, 0.1)`)
        processed_dir (str, optional): Where to cache processed data.
        transform (callable, optional): Applied to the data on access.
        force_reload (bool): Re-process even if a cache exists.
    """
    source_hint = ("provide RecBole atomic files (<name>.inter, optionally "
                   "<name>.item) or GroupLens' u.data and u.item, see "
                   "docs/formats.md")
    formats = ('recbole', 'grouplens')

    def __init__(self, root: str, format: str = 'recbole',
                 name: Optional[str] = None, split: str = 'random',
                 split_seed: int = 0, rating_threshold: Optional[float] = None,
                 item_fields: Optional[Sequence[str]] = None,
                 ratios: Sequence[float] = DEFAULT_RATIOS,
                 processed_dir: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 force_reload: bool = False):
        check_split_options(split, ratios)
        if format == 'grouplens' and name is not None:
            raise ValueError("name applies to the recbole format only (GroupLens"
                             " files are u.data and u.item)")
        self.options = {
            'split': split, 'split_seed': split_seed,
            'rating_threshold': rating_threshold,
            'item_fields': None if item_fields is None else list(item_fields),
            'ratios': [float(r) for r in ratios]}
        super().__init__(root, format, name=name, processed_dir=processed_dir,
                         transform=transform, force_reload=force_reload)

    @property
    def split_root(self) -> str:
        r"""The folder of split folders: ``<root>/pyg_mmssl_splits``, or
        ``splits`` in the cache folder when ``root`` is read-only."""
        if writable(self.root):
            return osp.join(self.root, SPLIT_DIR)
        return osp.join(self.processed_dir, 'splits')

    @property
    def data_name(self) -> str:
        if self.format == 'grouplens':
            return 'u'
        return osp.basename(self.raw_paths[0])[:-len('.inter')]

    @property
    def split_dir(self) -> str:
        r"""The folder of this dataset's split."""
        o = self.options
        return osp.join(self.split_root, split_key(
            self.data_name, o['split'], o['split_seed'],
            o['rating_threshold'], o['ratios']))

    @property
    def raw_file_names(self) -> List[str]:
        if self.format == 'grouplens':
            names = list(GROUPLENS_FILES)
        else:
            names = [f'{self.name}.inter'] if self.name is not None else \
                raw_file_names('mmrec', self.root)
            names.append(names[0][:-len('.inter')] + '.item')
        names = names[:1] + [n for n in names[1:]
                             if osp.exists(osp.join(self.root, n))]
        return names + [osp.basename(p)
                        for p in feature_files(self.root).values()]

    @property
    def processed_file_names(self) -> List[str]:
        options = json.dumps(self.options, sort_keys=True)
        digest = hashlib.sha1(options.encode()).hexdigest()[:10]
        return [f'data_{self.format}_{self.data_name}_{digest}.pt']

    def _fingerprint(self) -> str:
        return self._with_split(super()._fingerprint())

    def _with_split(self, raw: str) -> str:
        h = hashlib.sha256(raw.encode())
        h.update(json.dumps(self.options, sort_keys=True).encode())
        meta = osp.join(self.split_dir, SPLIT_META)
        if osp.exists(meta):
            with open(meta, 'rb') as f:
                h.update(f.read())
        return h.hexdigest()

    def process(self) -> HeteroData:
        # The raw files are fingerprinted before they are read (as in the
        # base class), the split after: the first read writes it.
        raw = super()._fingerprint()
        data = build_data(*self._read())
        self._write_cache(data, self._with_split(raw))
        return self._named(data)

    def _read_cache(self, path: str, fingerprint: str) -> HeteroData:
        return self._named(super()._read_cache(path, fingerprint))

    def _named(self, data: HeteroData) -> HeteroData:
        # The files' own names of every user and item id (``token``), from
        # the split folder (which the cache's fingerprint covers).
        data['user'].token, data['item'].token = read_id_tokens(
            self.split_dir)
        return data

    def _read(self):
        o = self.options
        kwargs = dict(split=o['split'], split_seed=o['split_seed'],
                      rating_threshold=o['rating_threshold'],
                      item_fields=o['item_fields'], ratios=o['ratios'],
                      split_root=self.split_root)
        if self.format == 'grouplens':
            return read_grouplens(self.root, **kwargs)
        return read_recbole(self.root, self.name, **kwargs)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.root}, format={self.format})'


def default_ml100k_root() -> Optional[str]:
    r"""``$PYG_MMSSL_ML100K`` (an extracted MovieLens-100K folder), if set."""
    return os.environ.get(ML100K_ENV) or None


def ml100k_format(root: str) -> str:
    r"""``"recbole"`` for a folder with ``ml-100k.inter``, ``"grouplens"``
    for one with ``u.data``."""
    if osp.exists(osp.join(root, f'{ML100K_NAME}.inter')):
        return 'recbole'
    if osp.exists(osp.join(root, 'u.data')):
        return 'grouplens'
    raise FileNotFoundError(f"'{root}' holds neither {ML100K_NAME}.inter "
                            f"(RecBole's atomic files) nor u.data (GroupLens' "
                            f"files); benchmarks/ml100k.py prepares a folder")
