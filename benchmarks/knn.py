r"""What :func:`pyg_mmssl.nn.knn_item_graph` costs as the catalogue grows:
seconds and peak memory to build the item-item graph of ``I`` random items
with ``d`` features (``k`` neighbours, the default chunk of 1,024 items),
each size in a fresh process, next to the peak of the same process before
the call (the runtime and the features).

    python benchmarks/knn.py
    python benchmarks/knn.py --items 10000 100000 --dim 384 --threads 2

Prints a Markdown table; ``--json FILE`` also writes it.
"""
import argparse
import json
import os.path as osp
import sys
import time

from common import run_worker


def worker(items: int, dim: int, k: int, chunk: int, threads: int):
    import torch

    from pyg_mmssl.nn import knn_item_graph
    from pyg_mmssl.train import peak_memory_mb

    def peak_mb() -> float:
        return peak_memory_mb(torch.device('cpu'))

    torch.set_num_threads(threads)
    x = torch.randn(items, dim, generator=torch.Generator().manual_seed(0))
    before = peak_mb()
    start = time.perf_counter()
    edge_index, _ = knn_item_graph(x, k, chunk)
    seconds = time.perf_counter() - start
    print(json.dumps({'items': items, 'dim': dim, 'k': k, 'chunk': chunk,
                      'edges': edge_index.size(1), 'seconds': seconds,
                      'peak_mb_before': before, 'peak_mb': peak_mb()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--items', type=int, nargs='+',
                        default=[10_000, 50_000, 100_000, 200_000])
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--chunk', type=int, default=1024)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument('--worker', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.dim, args.k, args.chunk,
                      args.threads)
    rows = []
    for items in args.items:
        rows.append(run_worker(osp.abspath(__file__), [
            '--worker', str(items), '--dim', str(args.dim), '--k',
            str(args.k), '--chunk', str(args.chunk), '--threads',
            str(args.threads)]))
    print(f'knn_item_graph, d={args.dim}, k={args.k}, chunk {args.chunk}, '
          f'{args.threads} threads\n')
    print('| items | seconds | peak MB | peak MB before the call | '
          'added MB |')
    print('|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['items']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['peak_mb_before']:.0f} | "
              f"{r['peak_mb'] - r['peak_mb_before']:.0f} |")
    if args.json:
        from pyg_mmssl.files import atomic_write_json
        atomic_write_json(rows, args.json)


if __name__ == '__main__':
    sys.exit(main())
