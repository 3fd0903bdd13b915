r"""How training cost grows with the graph: seconds per epoch and peak memory
of LightGCN and MMSSL (each critic) on seeded synthetic power-law user-item
graphs at 1x, 2x, 4x, 8x, 16x TikTok's size (users, items and interactions
all scaled by the factor), with a fitted growth exponent
:math:`t \propto E^a` per model and, for MMSSL, per step component (the
``torch.profiler`` ranges of ``benchmarks/profile_step.py``).

    python benchmarks/scaling.py --out results/scaling
    python benchmarks/scaling.py --scales 1 2 4 --configs lightgcn mmssl:lowrank

Each (config, scale) runs in a fresh process (peak RSS is per process): one
warm-up step, then ``--steps`` timed steps extrapolated to an epoch. Writes
``scaling.json``, ``scaling.md`` and ``scaling.png`` into ``--out``.
"""
import argparse
import itertools
import json
import math
import os
import os.path as osp
import sys

from common import RANGES, preset_trainer, profiled_steps, run_worker

# TikTok (train split): 9,308 users, 6,710 items, 59,541 interactions; image
# and audio features of widths 128 and 128.
BASE = dict(users=9308, items=6710, edges=59541, dims=(128, 128))
CONFIGS = ['lightgcn', 'mmssl:lowrank', 'mmssl:exact']
# Per-component columns and fits (the optimiser step is negligible).
COMPONENTS = [r for r in RANGES if r != 'step.optimizer']


def power_law_data(scale: float, seed: int = 0, exponent: float = 0.8):
    r"""A seeded synthetic graph with Zipf-like user activity and item
    popularity (:math:`p \propto \mathrm{rank}^{-\text{exponent}}`), split
    80 / 10 / 10 per interaction, random features."""
    import torch

    from pyg_mmssl.data import build_data

    gen = torch.Generator().manual_seed(seed)
    num_users = round(BASE['users'] * scale)
    num_items = round(BASE['items'] * scale)
    num_edges = round(BASE['edges'] * scale / 0.8)  # train is 80 %

    def weights(n):
        w = torch.arange(1, n + 1, dtype=torch.float64).pow(-exponent)
        return w[torch.randperm(n, generator=gen)]

    wu, wi = weights(num_users), weights(num_items)
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < num_edges:
        n = num_edges - keys.numel()
        u = torch.multinomial(wu, 2 * n, replacement=True, generator=gen)
        i = torch.multinomial(wi, 2 * n, replacement=True, generator=gen)
        keys = torch.unique(torch.cat([keys, u * num_items + i]))
    keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges]]
    ei = torch.stack([keys // num_items, keys % num_items])
    n_val = n_test = num_edges // 10
    splits = {'val': ei[:, :n_val], 'test': ei[:, n_val:n_val + n_test],
              'train': ei[:, n_val + n_test:]}
    features = {f'modality_{j}': torch.randn(num_items, d, generator=gen)
                for j, d in enumerate(BASE['dims'])}
    return build_data(num_users, num_items, splits, features)


def worker(args):
    import torch

    from pyg_mmssl.train import peak_memory_mb

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = power_law_data(args.scale)
    trainer = preset_trainer(args.worker, data, 'tiktok', args.device)
    trainer.model.train()
    batches = (b for _ in itertools.count() for b in trainer.sampler)
    trainer.train_step(next(batches), {'step': 0})  # warm-up, first refresh
    ms = profiled_steps(trainer, batches, args.steps)
    steps = len(trainer.sampler)
    print(json.dumps({
        'config': args.worker, 'scale': args.scale,
        'users': data['user'].num_nodes, 'items': data['item'].num_nodes,
        'train_edges': int(trainer.sampler.edge_index.size(1)),
        'steps_per_epoch': steps, 'seconds_per_step': ms['step'] / 1e3,
        'seconds_per_epoch': ms['step'] / 1e3 * steps,
        'component_seconds_per_epoch': {
            k: ms[k] / 1e3 * steps for k in COMPONENTS},
        'peak_memory_mb': peak_memory_mb(trainer.device),
    }))


def fit_exponent(xs, ys) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x`."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((x - mx)**2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / var


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--scales', type=float, nargs='+',
                        default=[1, 2, 4, 8, 16])
    parser.add_argument('--configs', nargs='+', default=CONFIGS)
    parser.add_argument('--max-scale', nargs='*', default=['mmssl:exact=4'],
                        help='CONFIG=S: skip CONFIG above scale S (the '
                        'dense-weight critic needs about 4.5 I^2 bytes)')
    parser.add_argument('--steps', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', default='results/scaling')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--scale', type=float, default=1.,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    limits = dict(x.split('=') for x in args.max_scale)
    os.makedirs(args.out, exist_ok=True)
    path = osp.join(args.out, 'scaling.json')
    rows = []
    if osp.exists(path):  # resumable: keep finished (config, scale) pairs
        with open(path) as f:
            rows = json.load(f)['results']
    done = {(r['config'], r['scale']) for r in rows}
    from pyg_mmssl.files import atomic_write_json
    for config in args.configs:
        for scale in args.scales:
            if (config, scale) in done or scale > float(
                    limits.get(config, 'inf')):
                continue
            rows.append(run_worker(__file__, [
                '--worker', config, '--scale', str(scale), '--steps',
                str(args.steps), '--threads', str(args.threads), '--device',
                args.device]))
            print(f"{config} {scale:g}x: "
                  f"{rows[-1]['seconds_per_epoch']:.1f} s/epoch, "
                  f"{rows[-1]['peak_memory_mb']:.0f} MB", file=sys.stderr)
            atomic_write_json({'args': vars(args), 'results': rows}, path)

    lines = ['| model | scale | users | items | train edges | s/epoch | '
             'peak MB | ' + ' | '.join(COMPONENTS) + ' |',
             '|---' * (7 + len(COMPONENTS)) + '|']
    fits = {}
    for config in args.configs:
        mine = sorted((r for r in rows if r['config'] == config),
                      key=lambda r: r['scale'])
        for r in mine:
            comp = r['component_seconds_per_epoch']
            lines.append(
                f"| {config} | {r['scale']:g}x | {r['users']} | {r['items']}"
                f" | {r['train_edges']} | {r['seconds_per_epoch']:.1f} | "
                f"{r['peak_memory_mb']:.0f} | " + ' | '.join(
                    f'{comp[k]:.1f}' for k in COMPONENTS) + ' |')
        if len(mine) >= 2:
            edges = [r['train_edges'] for r in mine]
            fits[config] = {
                'epoch': fit_exponent(edges,
                                      [r['seconds_per_epoch'] for r in mine]),
                'memory': fit_exponent(edges,
                                       [r['peak_memory_mb'] for r in mine]),
                **{k: fit_exponent(edges, [
                    r['component_seconds_per_epoch'][k] for r in mine])
                   for k in COMPONENTS
                   if all(r['component_seconds_per_epoch'][k] > 0
                          for r in mine)},
            }
    lines += ['', '| model | exponent of s/epoch in E | of peak memory | '
              'per component |', '|---|---|---|---|']
    for config, fit in fits.items():
        comp = ', '.join(f'{k} {v:.2f}' for k, v in fit.items()
                         if k not in ('epoch', 'memory'))
        lines.append(f"| {config} | {fit['epoch']:.2f} | {fit['memory']:.2f}"
                     f" | {comp or '-'} |")
    table = '\n'.join(lines)
    print(table)
    with open(osp.join(args.out, 'scaling.md'), 'w') as f:
        f.write(table + '\n')
    atomic_write_json({'args': vars(args), 'results': rows, 'fits': fits},
                      path)
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for config in args.configs:
        mine = sorted((r for r in rows if r['config'] == config),
                      key=lambda r: r['scale'])
        if not mine:
            continue
        edges = [r['train_edges'] for r in mine]
        axes[0].loglog(edges, [r['seconds_per_epoch'] for r in mine], 'o-',
                       label=config)
        axes[1].loglog(edges, [r['peak_memory_mb'] for r in mine], 'o-',
                       label=config)
    axes[0].set(xlabel='training interactions', ylabel='seconds per epoch')
    axes[1].set(xlabel='training interactions', ylabel='peak memory (MB)')
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(osp.join(args.out, 'scaling.png'), dpi=120)


if __name__ == '__main__':
    main()
