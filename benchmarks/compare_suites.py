r"""Compares one model's runs across several suites (``benchmarks/suite.py
--out DIR``), e.g. MMSSL with two critics:

    python benchmarks/compare_suites.py results/tiktok results/tiktok-exact \
        --model mmssl --labels lowrank exact

Reads every ``DIR/runs/<model>-seed<s>/``: ``metrics.json`` where the run
has finished and ``history.json``, which training rewrites every epoch, so
runs still under way show in the trajectory table. Prints two markdown
tables:

1. per suite, over its finished seeds: test Recall@20 and NDCG@20 (mean ±
   std), the relative difference of the mean test Recall@20 to the first
   suite's, :math:`(\bar r - \bar r_1) / \bar r_1`, the best validation
   Recall@20, the best epoch and the epochs run (means);
2. validation Recall@20 per seed, averaged over blocks of ``--block``
   epochs; a block a run has only partly reached shows its epoch count.

Seconds are left out on purpose: a suite's epoch times describe whatever
shared the machine with it (``benchmarks/epoch_time.py`` times alone).
"""
import argparse
import os.path as osp
import statistics
from typing import Dict, List, Optional

from common import load_runs, mean_std


def summary(suites: Dict[str, List[Dict]]) -> str:
    lines = [
        '| suite | finished seeds | test Recall@20 | test NDCG@20 | '
        'vs first | best val Recall@20 | best epoch | epochs |',
        '|---|---|---|---|---|---|---|---|'
    ]
    base: Optional[float] = None
    for label, runs in suites.items():
        finished = [r for r in runs if r['metrics'] is not None]
        done = [r['metrics'] for r in finished]
        recall = [m['test']['recall@20'] for m in done]
        rel = ''
        if recall and base is None:
            base = statistics.mean(recall)
        elif recall:
            rel = f'{(statistics.mean(recall) - base) / base:+.1%}'
        cells = [
            f"{len(done)} ({', '.join(str(r['seed']) for r in finished)})"
            if done else '0',
            mean_std(recall),
            mean_std([m['test']['ndcg@20'] for m in done]),
            rel,
            mean_std([m['val']['recall@20'] for m in done]),
            f"{statistics.mean(m['best_epoch'] for m in done):.0f}"
            if done else '',
            f"{statistics.mean(m['epochs_run'] for m in done):.0f}"
            if done else '',
        ]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def trajectories(suites: Dict[str, List[Dict]], block: int) -> str:
    cols = [(f"{label} s{r['seed']}", r['val'])
            for label, runs in suites.items() for r in runs]
    longest = max(len(val) for _, val in cols)
    lines = ['| epochs | ' + ' | '.join(c for c, _ in cols) + ' |',
             '|---' * (len(cols) + 1) + '|']
    for start in range(0, longest, block):
        cells = []
        for _, val in cols:
            part = val[start:start + block]
            cell = f'{statistics.mean(part):.4f}' if part else ''
            if part and len(part) < block:
                cell += f' ({len(part)})'
            cells.append(cell)
        stop = min(start + block, longest)
        lines.append(f'| {start + 1}-{stop} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('dirs', nargs='+', help='suite output directories')
    parser.add_argument('--model', default='mmssl')
    parser.add_argument('--labels', nargs='+', default=None,
                        help='one per directory (default: its name)')
    parser.add_argument('--block', type=int, default=10,
                        help='epochs per row of the trajectory table')
    args = parser.parse_args(argv)
    labels = args.labels or [osp.basename(osp.normpath(d)) for d in args.dirs]
    if len(labels) != len(args.dirs) or len(set(labels)) != len(labels):
        parser.error('--labels needs one distinct label per directory')
    if args.block < 1:
        parser.error('--block must be at least 1')
    suites = {label: load_runs(d, args.model)
              for label, d in zip(labels, args.dirs)}
    text = (summary(suites) + '\n\nValidation Recall@20, mean over blocks of '
            f'{args.block} epochs:\n\n' + trajectories(suites, args.block))
    print(text)
    return text


if __name__ == '__main__':
    main()
