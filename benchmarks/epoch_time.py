r"""Seconds per training epoch and peak memory of MMSSL (each critic) and
LightGCN on a dataset, each measured in a fresh process (peak RSS is per
process), with the dataset's preset and the same trainer as ``pyg-mmssl
train``.

    python benchmarks/epoch_time.py --dataset tiktok --threads 2
    python benchmarks/epoch_time.py --steps 10   # time 10 steps, extrapolate

Prints a Markdown table; ``--json FILE`` also writes the figures.
"""
import argparse
import json
import sys
import time

from common import preset_trainer, run_worker

CONFIGS = ['lightgcn', 'mmgcn', 'mmssl:lowrank', 'mmssl:exact', 'mmssl:dense']


def worker(args):
    import torch

    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.train import peak_memory_mb

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.root)
    trainer = preset_trainer(args.worker, data, args.dataset, args.device)
    state = {'step': 0}
    trainer.model.train()
    batches = iter(trainer.sampler)
    trainer.train_step(next(batches), state)  # warm-up, not timed
    steps = len(trainer.sampler) - 1
    if args.steps:
        steps = min(args.steps, steps)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(batches), state)
    seconds = time.perf_counter() - start
    print(json.dumps({
        'config': args.worker,
        'batch_size': trainer.config.batch_size,
        'steps_per_epoch': len(trainer.sampler),
        'steps_timed': steps,
        'seconds_per_step': seconds / steps,
        'seconds_per_epoch': seconds / steps * len(trainer.sampler),
        'peak_memory_mb': peak_memory_mb(trainer.device),
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--configs', nargs='+', default=CONFIGS)
    parser.add_argument('--steps', type=int, default=0,
                        help='steps to time (0: a whole epoch)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', default=None)
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    rows = []
    for config in args.configs:
        cmd = ['--worker', config, '--dataset', args.dataset, '--steps',
               str(args.steps), '--threads', str(args.threads), '--device',
               args.device] + (['--root', args.root] if args.root else [])
        rows.append(run_worker(__file__, cmd))
        print(f"{config}: {rows[-1]['seconds_per_epoch']:.1f} s/epoch",
              file=sys.stderr)
    print('| model | batch | steps/epoch | s/step | s/epoch | peak MB |\n'
          '|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['config']} | {r['batch_size']} | {r['steps_per_epoch']} "
              f"| {r['seconds_per_step']:.3f} | {r['seconds_per_epoch']:.1f} "
              f"| {r['peak_memory_mb']:.0f} |")
    if args.json:
        from pyg_mmssl.io import atomic_write_json
        atomic_write_json({'args': vars(args), 'results': rows}, args.json)


if __name__ == '__main__':
    main()
