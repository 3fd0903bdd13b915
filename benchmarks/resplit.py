r"""Writes a dataset again with a new split: every user's interactions (all
of train, validation and test together) shuffled with ``--seed`` and cut
80 / 10 / 10, in the ``mmssl`` JSON layout with the item features as
``<modality>_feat.npy``. Users with few interactions (TikTok's median is
three) still get held-out items: one test item from two interactions on,
one validation item from three on, and always one training item.
Load it with ``--dataset mmssl --root OUT``. A second split tells whether a
result holds beyond the one split a dataset ships with.

    python benchmarks/resplit.py --dataset tiktok --seed 7 --out data/tiktok-seed7
    pyg-mmssl train --model lightgcn --dataset mmssl --root data/tiktok-seed7

``--out`` is a folder outside the repository (or under the ignored
``results/``): the files hold the dataset's data.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import numpy as np
import torch

SHARES = {'val': 0.1, 'test': 0.1}


def split_per_user(edge_index: torch.Tensor, num_users: int,
                   seed: int) -> Dict[str, torch.Tensor]:
    r"""``{"train", "val", "test"}`` parts of ``[2, E]`` (user, item) pairs:
    a user's :math:`n` pairs in a random order (``seed``), the first
    :math:`n_{val}` to validation, the next :math:`n_{test}` to test, the
    rest to train, with :math:`n_{test} = \max(1, \mathrm{round}(0.1 n))`
    for :math:`n \ge 2` and :math:`n_{val} = \max(1, \mathrm{round}(0.1
    n))` for :math:`n \ge 3` (zero below): at least one training pair each.
    """
    g = torch.Generator().manual_seed(seed)
    user = edge_index[0]
    # Sort by user, random order within a user.
    order = torch.argsort(user * edge_index.size(1) +
                          torch.randperm(user.numel(), generator=g))
    user = user[order]
    count = torch.bincount(user, minlength=num_users)
    start = torch.cumsum(count, 0) - count
    rank = torch.arange(user.numel()) - start[user]
    n = count[user].double()

    def share(name: str, least: int) -> torch.Tensor:
        k = torch.round(SHARES[name] * n).clamp(min=1)
        return torch.where(n >= least, k, torch.zeros_like(k))

    n_val, n_test = share('val', 3), share('test', 2)
    part = torch.where(rank < n_val, 1, torch.where(rank < n_val + n_test,
                                                    2, 0))
    pairs = edge_index[:, order]
    return {name: pairs[:, part == j]
            for j, name in enumerate(('train', 'val', 'test'))}


def to_json(edge_index: torch.Tensor) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for u, i in sorted(edge_index.t().tolist()):
        out.setdefault(str(u), []).append(i)
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)

    from pyg_mmssl.data import modality_features, split_edge_index
    from pyg_mmssl.datasets import load_dataset

    data = load_dataset(args.dataset, args.root)
    every = torch.cat([split_edge_index(data, s)
                       for s in ('train', 'val', 'test')], dim=1)
    parts = split_per_user(every, data['user'].num_nodes, args.seed)
    if osp.exists(args.out) and os.listdir(args.out):
        sys.exit(f"'{args.out}' is not empty; choose a new folder")
    os.makedirs(args.out, exist_ok=True)
    for name, pairs in parts.items():
        with open(osp.join(args.out, f'{name}.json'), 'w') as f:
            json.dump(to_json(pairs), f)
    for m, x in modality_features(data).items():
        np.save(osp.join(args.out, f'{m}_feat.npy'), x.numpy())
    counts = {name: pairs.size(1) for name, pairs in parts.items()}
    print(f"{args.dataset}, seed {args.seed}: " + ', '.join(
        f'{v} {k}' for k, v in counts.items()) + f" interactions in {args.out}")
    return counts


if __name__ == '__main__':
    main()
