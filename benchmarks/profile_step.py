r"""Where one MMSSL training step spends its time, per critic: the model's
forward pass, the critic update (real rows, critic loss, its backward and
Adam step), the generator term, the learned-graph refresh, and the
recommender's backward and optimiser step (``torch.profiler`` ranges that
the model and trainer mark), averaged over ``--steps`` steps after one
warm-up step.

    python benchmarks/profile_step.py --dataset tiktok --steps 4

Prints a Markdown table (ms per step); ``--json FILE`` also writes it.
"""
import argparse
import json

from common import RANGES, preset_trainer, profiled_steps, run_worker


def worker(args):
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
    print(json.dumps({'critic': args.worker, 'ms': row}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--critics', nargs='+',
                        default=['dense', 'exact', 'lowrank'])
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', default=None)
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for critic in args.critics:
        cmd = ['--worker', critic, '--dataset', args.dataset, '--steps',
               str(args.steps), '--threads', str(args.threads), '--device',
               args.device] + (['--root', args.root] if args.root else [])
        rows.append(run_worker(__file__, cmd))
    names = RANGES + ['other', 'step']
    print('| critic | ' + ' | '.join(names) + ' |')
    print('|---' * (len(names) + 1) + '|')
    for r in rows:
        print(f"| {r['critic']} | " +
              ' | '.join(f"{r['ms'][n]:.0f}" for n in names) + ' |')
    if args.json:
        from pyg_mmssl.io import atomic_write_json
        atomic_write_json({'args': vars(args), 'results': rows}, args.json)


if __name__ == '__main__':
    main()
