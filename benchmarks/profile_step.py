r"""Where one MMSSL training step spends its time, per critic: the model's
forward pass, the critic update (real rows, critic loss, its backward and
Adam step), the generator term, the learned-graph refresh, and the
recommender's backward and optimiser step (``torch.profiler`` ranges that
the model and trainer mark), averaged over ``--steps`` steps after one
warm-up step. Also times the per-epoch work outside the steps: drawing
one epoch of BPR batches, and one validation pass (forward + full ranking).

    python benchmarks/profile_step.py --dataset tiktok --steps 4
    python benchmarks/profile_step.py --device cuda --steps 20

Prints Markdown tables (ms per step, ms per epoch); ``--json FILE`` also
writes them.
"""
import json
import time

from common import (RANGES, dataset_parser, dataset_worker, preset_trainer,
                    profiled_steps, save_json)


def worker(args):
    import os
    if args.device.startswith('cuda'):
        # Kernels finish before the launch returns, so that each range holds
        # its own GPU time rather than the next synchronising range.
        os.environ['CUDA_LAUNCH_BLOCKING'] = '1'
    import torch

    from pyg_mmssl.datasets import load_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset, args.root)
    trainer = preset_trainer(f'mmssl:{args.worker}', data, args.dataset,
                             args.device)
    trainer.model.train()
    batches = iter(trainer.sampler)
    trainer.train_step(next(batches), {'step': 0})  # warm-up
    row = profiled_steps(trainer, batches, args.steps)
    start = time.perf_counter()
    for _ in trainer.sampler:  # one epoch of batches, nothing trained
        pass
    sampling = time.perf_counter() - start
    start = time.perf_counter()
    trainer.evaluate('val')
    evaluation = time.perf_counter() - start
    print(json.dumps({'critic': args.worker, 'ms': row,
                      'steps_per_epoch': len(trainer.sampler),
                      'epoch_ms': {'sampling': sampling * 1e3,
                                   'evaluation': evaluation * 1e3}}))


def main(argv=None):
    parser = dataset_parser(__doc__, steps=4)
    parser.add_argument('--critics', nargs='+',
                        default=['dense', 'exact', 'lowrank'])
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    rows = [dataset_worker(__file__, args, critic) for critic in args.critics]
    names = RANGES + ['other', 'step']
    print('| critic | ' + ' | '.join(names) + ' |')
    print('|---' * (len(names) + 1) + '|')
    for r in rows:
        print(f"| {r['critic']} | " +
              ' | '.join(f"{r['ms'][n]:.0f}" for n in names) + ' |')
    print('\n| critic | steps x step | sampling | evaluation (val) |\n'
          '|---|---|---|---|')
    for r in rows:
        e = r['epoch_ms']
        print(f"| {r['critic']} | {r['steps_per_epoch'] * r['ms']['step']:.0f}"
              f" | {e['sampling']:.0f} | {e['evaluation']:.0f} |")
    save_json(args, rows)
    return rows


if __name__ == '__main__':
    main()
