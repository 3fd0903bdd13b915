r"""Where one MMSSL training step spends its time, per critic: the model's
forward pass, the critic update (real rows, critic loss, its backward and
Adam step), the generator term, the learned-graph refresh, and the
recommender's backward and optimiser step (``torch.profiler`` ranges that
the model and trainer mark), averaged over ``--steps`` steps after one
warm-up step.

    python benchmarks/profile_step.py --dataset tiktok --steps 4

Prints a Markdown table (ms per step); ``--json FILE`` also writes it.
"""
import json

from common import (RANGES, dataset_parser, dataset_worker, preset_trainer,
                    profiled_steps, save_json)


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
    parser = dataset_parser(__doc__, steps=4)
    parser.add_argument('--critics', nargs='+',
                        default=['dense', 'exact', 'lowrank'])
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = [dataset_worker(__file__, args, critic) for critic in args.critics]
    names = RANGES + ['other', 'step']
    print('| critic | ' + ' | '.join(names) + ' |')
    print('|---' * (len(names) + 1) + '|')
    for r in rows:
        print(f"| {r['critic']} | " +
              ' | '.join(f"{r['ms'][n]:.0f}" for n in names) + ' |')
    save_json(args, rows)


if __name__ == '__main__':
    main()
