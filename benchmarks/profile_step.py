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
import dataclasses
import os
import subprocess
import sys

RANGES = ['mmssl.forward', 'mmssl.critic', 'mmssl.generator',
          'mmssl.refresh', 'step.backward', 'step.optimizer']


def worker(args):
    import json

    import torch
    from torch.profiler import profile

    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.nn.models import MMSSL
    from pyg_mmssl.presets import override, preset
    from pyg_mmssl.train import Trainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset, args.root)
    model_cfg, train_cfg = preset('mmssl', args.dataset)
    model_cfg = override(model_cfg, {'critic': args.worker})
    train_cfg = override(train_cfg, {'device': args.device, 'quiet': True})
    model = MMSSL.from_data(data, **dataclasses.asdict(model_cfg))
    trainer = Trainer(model, data, train_cfg)
    state = {'step': 0}
    model.train()
    batches = iter(trainer.sampler)
    trainer.train_step(next(batches), state)  # warm-up
    with profile() as prof:
        for _ in range(args.steps):
            trainer.train_step(next(batches), state)
    totals = {e.key: e.cpu_time_total / 1e3 / args.steps
              for e in prof.key_averages() if e.key in RANGES + ['step.loss']}
    row = {name: totals.get(name, 0.) for name in RANGES}
    step = totals.get('step.loss', 0.) + row['step.backward'] + \
        row['step.optimizer']
    row['other'] = step - sum(row.values())
    row['step'] = step
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
    import json
    rows = []
    for critic in args.critics:
        cmd = [sys.executable, __file__, '--worker', critic, '--dataset',
               args.dataset, '--steps', str(args.steps), '--threads',
               str(args.threads), '--device', args.device]
        if args.root:
            cmd += ['--root', args.root]
        out = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
        if out.returncode != 0:
            sys.exit(f'{critic} failed:\n{out.stderr}')
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
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
