r"""The issue's cost target "time to reach LightGCN's best": for each seed of
a suite (``benchmarks/suite.py --out DIR``), the reference model's best
validation Recall@20 and the epochs it needed; for every other model, the
first epoch at which its validation Recall@20 reaches that value (the same
seed's). Epochs become seconds with the seconds per epoch of one
``benchmarks/epoch_time.py --json FILE`` run (each model alone), since a
suite's own epoch times describe whatever shared the machine with it.

    python benchmarks/time_to_reach.py results/suite results/epoch_time.json
    python benchmarks/time_to_reach.py DIR TIMES --models lightgcn mmssl \
        --times mmssl=mmssl   # suite label = epoch_time config

Prints one Markdown table: per model and seed, the epoch (and seconds) at
which it first reaches the reference's best, or ``-`` if it never does;
then the mean seconds over the seeds that reach it, and the ratio to the
reference's own mean time to its best.
"""
import argparse
import glob
import json
import os.path as osp
import re
import statistics
from typing import Dict, List, Optional

from common import load_runs


def val_curves(root: str, label: str) -> Dict[int, List[float]]:
    r"""``{seed: [validation Recall@20 of epoch 1, 2, ...]}`` of suite label
    ``label``'s runs in suite folder ``root`` (see :func:`load_runs`)."""
    return {r['seed']: r['val']
            for r in load_runs(root, label.replace(':', '-'))}


def first_reaching(curve: List[float], target: float) -> Optional[int]:
    r"""The first epoch (from 1) whose value is at least ``target``."""
    for epoch, value in enumerate(curve, start=1):
        if value >= target:
            return epoch
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('suite', help='folder of a benchmarks/suite.py run')
    parser.add_argument('epoch_time', help='JSON of benchmarks/epoch_time.py')
    parser.add_argument('--reference', default='lightgcn')
    parser.add_argument('--models', nargs='+', default=None,
                        help='suite labels (default: every one in the suite)')
    parser.add_argument('--times', nargs='*', default=[],
                        help='LABEL=CONFIG where a suite label and its '
                        'epoch_time config differ')
    args = parser.parse_args(argv)

    with open(args.epoch_time) as f:
        seconds = {r['config']: r['seconds_per_epoch']
                   for r in json.load(f)['results']}
    config = dict(t.split('=', 1) for t in args.times)
    labels = args.models or sorted({
        re.sub(r'-seed\d+$', '', osp.basename(p))
        for p in glob.glob(osp.join(args.suite, 'runs', '*-seed*'))})
    if args.reference not in labels:
        labels = [args.reference] + labels
    labels = [args.reference] + [m for m in labels if m != args.reference]
    for label in labels:
        if config.get(label, label) not in seconds:
            parser.error(f"{args.epoch_time} has no config "
                         f"'{config.get(label, label)}' (for '{label}'; map "
                         f"it with --times {label}=CONFIG)")

    reference = val_curves(args.suite, args.reference)
    seeds = sorted(reference)
    target = {s: max(reference[s]) for s in seeds}
    ref_epochs = {s: reference[s].index(target[s]) + 1 for s in seeds}
    ref_time = statistics.mean(ref_epochs[s] for s in seeds) * \
        seconds[config.get(args.reference, args.reference)]

    lines = [
        f"Target per seed: {args.reference}'s best validation Recall@20 ("
        + ', '.join(f'seed {s}: {target[s]:.4f} at epoch {ref_epochs[s]}'
                    for s in seeds) + ').', '',
        '| model | s/epoch | ' + ' | '.join(f'seed {s}: epoch (s)'
                                           for s in seeds)
        + ' | mean s (seeds reaching) | x reference |',
        '|---' * (len(seeds) + 4) + '|']
    for label in labels:
        per_epoch = seconds[config.get(label, label)]
        curves = val_curves(args.suite, label)
        cells, times = [], []
        for s in seeds:
            epoch = first_reaching(curves.get(s, []), target[s])
            if epoch is None:
                cells.append('-')
            else:
                times.append(epoch * per_epoch)
                cells.append(f'{epoch} ({epoch * per_epoch:.0f})')
        mean = statistics.mean(times) if times else None
        lines.append(
            f'| {label} | {per_epoch:.2f} | ' + ' | '.join(cells) + ' | '
            + (f'{mean:.0f} ({len(times)}/{len(seeds)})' if times else '-')
            + ' | ' + (f'{mean / ref_time:.2f}' if times else '-') + ' |')
    text = '\n'.join(lines)
    print(text)
    return text


if __name__ == '__main__':
    main()
