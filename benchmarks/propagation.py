r"""Forward + backward time of one user -> item -> user propagation hop
through :class:`MMSSLConv` for every adjacency backend, on random bipartite
graphs of TikTok's node counts (9,308 users, 6,710 items) with growing edge
counts (TikTok's training graph has 59,541 edges; MMSSL's learned graphs at
the TikTok preset have 624k).

    python benchmarks/propagation.py --threads 2
"""
import argparse
import time

import torch

from pyg_mmssl.nn.adjacency import BipartiteGraph, available_backends
from pyg_mmssl.nn.conv import MMSSLConv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--users', type=int, default=9308)
    parser.add_argument('--items', type=int, default=6710)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--edges', type=int, nargs='+',
                        default=[59541, 250000, 624000])
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    U, I = args.users, args.items
    conv = MMSSLConv(normalize='none')
    backends = available_backends()
    print('| edges | ' + ' | '.join(f'{b} (ms)' for b in backends) + ' |')
    print('|---' * (len(backends) + 1) + '|')
    for num_edges in args.edges:
        g = torch.Generator().manual_seed(0)
        key = torch.unique(torch.randint(U * I, (num_edges, ), generator=g))
        edge_index = torch.stack([key // I, key % I]).to(device)
        cells = []
        for backend in backends:
            graph = BipartiteGraph.build(edge_index, U, I, backend=backend)
            x = torch.randn(I, args.dim, device=device, requires_grad=True)

            def run():
                p, q = graph.item_to_user, graph.user_to_item
                h = conv((x, None), p.adj, p.edge_weight, size=p.size)
                out = conv((h, None), q.adj, q.edge_weight, size=q.size)
                out.sum().backward()

            run()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeat):
                run()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            cells.append((time.perf_counter() - start) / args.repeat * 1000)
        print(f'| {key.numel()} | ' + ' | '.join(f'{c:.1f}' for c in cells)
              + ' |')


if __name__ == '__main__':
    main()
