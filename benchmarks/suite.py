r"""The accuracy benchmark: several models on one dataset, several seeds,
the same protocol (``pyg-mmssl train``: validation-selected, full ranking,
training items masked). Each run is its own ``pyg-mmssl train`` process, so
peak memory is per run.

    python benchmarks/suite.py --dataset tiktok --seeds 0 1 2 --out results/tiktok
    python benchmarks/suite.py --dataset synthetic --seeds 0 --epochs 2 --out /tmp/s
    python benchmarks/suite.py ... --jobs 2 --threads 1   # two runs at a time
    python benchmarks/suite.py --models lightgcn mmssl mmssl:tiktok-paper ...

A model is ``NAME`` (the dataset's preset, or ``--preset``) or
``NAME:PRESET`` (that preset, e.g. the released code's values as
``mmssl:tiktok-paper``). ``mostpop``, the popularity baseline, is evaluated
without training (its curve is one point at 0 s).

``--jobs N`` runs N (model, seed) pairs at a time, each with ``--threads``
intra-op threads (default: the CPU count divided by N), so a machine's cores
are shared without oversubscription; seconds per epoch then describe that
sharing, not a run alone (``benchmarks/epoch_time.py`` measures alone).
Reused runs keep the figures of the invocation that trained them.

Writes into ``--out``: ``runs/<model>-seed<s>/`` (each run's files),
``results.json`` (every run's metrics, epochs, seconds per epoch, training
time, peak memory, the commands, versions and machine), ``results.md``
(the headline table, then mean +- std of every metric) and ``val_recall.png`` (validation Recall@20 against
training wall time, one colour per model).
"""
import argparse
import concurrent.futures
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from common import mean_std

# The library's models, the reference of the headline table first.
MODELS = ('lightgcn', 'mmgcn', 'freedom', 'bm3', 'mmssl', 'mostpop')
KS = (10, 20, 50)
METRICS = ('recall', 'ndcg', 'precision', 'hit')


def parse_model(text: str) -> Tuple[str, Optional[str]]:
    r"""``(name, preset)`` of a ``--models`` entry ``NAME[:PRESET]``, or
    :class:`argparse.ArgumentTypeError` naming what is wrong."""
    from pyg_mmssl.presets import preset_names
    name, _, preset = text.partition(':')
    if name not in MODELS:
        raise argparse.ArgumentTypeError(
            f"unknown model '{name}', expected one of {list(MODELS)}")
    if preset and preset not in preset_names(name):
        raise argparse.ArgumentTypeError(
            f"unknown preset '{preset}' for {name}, expected one of "
            f"{preset_names(name)}")
    return name, preset or None


def run_one(args, label: str, seed: int) -> Dict[str, Any]:
    model, preset = parse_model(label)
    preset = preset or args.preset
    out = osp.join(args.out, 'runs', f"{label.replace(':', '-')}-seed{seed}")
    cmd = [sys.executable, '-m', 'pyg_mmssl.cli', 'train', '--model', model,
           '--dataset', args.dataset, '--seed', str(seed), '--device',
           args.device, '--out', out, '--quiet']
    if args.root:
        cmd += ['--root', args.root]
    if preset:
        cmd += ['--preset', preset]
    if args.epochs:
        cmd += ['--epochs', str(args.epochs)]
    if model == 'mmssl' and args.critic:
        cmd += ['--critic', args.critic]
    resume = osp.exists(osp.join(out, 'last.pt'))
    if osp.exists(osp.join(out, 'metrics.json')):
        print(f'{model} seed {seed}: already finished, reusing {out}',
              file=sys.stderr)
    else:
        start = time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
                   MKL_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd + (['--resume'] if resume else []),
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f'{model} seed {seed} failed (its files are '
                               f'in {out}):\n{proc.stderr[-2000:]}')
        print(f'{model} seed {seed}: {time.perf_counter() - start:.0f} s',
              file=sys.stderr)
    with open(osp.join(out, 'metrics.json')) as f:
        metrics = json.load(f)
    with open(osp.join(out, 'history.json')) as f:
        history = json.load(f)
    curve = [(h['elapsed'], h['val']['recall@20']) for h in history
             if 'val' in h]
    if not history:  # a model that does not learn: its value at 0 s
        curve = [(0.0, metrics['val']['recall@20'])]
    return {
        'model': label,
        'seed': seed,
        'command': ' '.join(cmd),
        'best_epoch': metrics['best_epoch'],
        'epochs_run': metrics['epochs_run'],
        'seconds_per_epoch': metrics['seconds_per_epoch'],
        'train_seconds': metrics['train_seconds'],
        'peak_memory_mb': metrics['peak_memory_mb'],
        'val': metrics['val'],
        'test': metrics['test'],
        'curve': curve,
        'best_seconds': next((h['elapsed'] for h in history
                              if h.get('epoch') == metrics['best_epoch']),
                             None if history else 0.0),
    }


def environment() -> Dict[str, Any]:
    import torch
    import torch_geometric

    import pyg_mmssl
    return {
        'python': platform.python_version(),
        'torch': torch.__version__,
        'torch_geometric': torch_geometric.__version__,
        'pyg_mmssl': pyg_mmssl.__version__,
        'platform': platform.platform(),
        'processor': platform.processor() or platform.machine(),
        'cpu_count': os.cpu_count(),
        'cuda': (torch.cuda.get_device_name(0)
                 if torch.cuda.is_available() else None),
    }



def time_to(run: Dict[str, Any], target: float) -> Optional[float]:
    r"""Training seconds until ``run``'s validation Recall@20 first reaches
    ``target``, or :obj:`None` if it never does."""
    return next((t for t, v in run['curve'] if v >= target), None)


def headline(runs: List[Dict[str, Any]], models) -> str:
    r"""One row per model: test Recall@20 and NDCG@20 (mean +- std over
    seeds) and their ratio to the first model's means, seconds per epoch,
    seconds to the best validation epoch, seconds until validation
    Recall@20 first reaches the first model's best (same seed; means over
    seeds, "never" counted), and the largest peak memory. The first model's
    best is its curve's highest point: with the popularity adjustment the
    run's reported validation is the adjusted one, which no epoch of the
    (unadjusted) curves reaches."""
    target = {r['seed']: max(v for _, v in r['curve'])
              for r in runs if r['model'] == models[0]}
    lines = ['| model | seeds | test Recall@20 | test NDCG@20 | x ' +
             models[0] + ' (R / N) | s/epoch | s to best | s to ' +
             models[0] + "'s best | peak MB |", '|---' * 9 + '|']
    means = {}
    for model in models:
        rs = [r for r in runs if r['model'] == model]
        if not rs:
            continue
        recall = [r['test']['recall@20'] for r in rs]
        ndcg = [r['test']['ndcg@20'] for r in rs]
        means[model] = statistics.mean(recall), statistics.mean(ndcg)
        ratio = '/'.join(f'{a / b:.2f}' for a, b in zip(
            means[model], means[models[0]]))
        reach = [time_to(r, target[r['seed']])
                 for r in rs if r['seed'] in target]
        met = [t for t in reach if t is not None]
        reached = (f'{statistics.mean(met):.0f}' if met else 'never') + (
            f' ({len(met)}/{len(reach)} seeds)' if len(met) < len(reach)
            else '')
        best = [r['best_seconds'] for r in rs if r['best_seconds'] is not None]
        lines.append(
            f'| {model} | {len(rs)} | {mean_std(recall)} | {mean_std(ndcg)} '
            f'| {ratio} '
            f"| {statistics.mean(r['seconds_per_epoch'] for r in rs):.2f} "
            f"| {statistics.mean(best):.0f} | {reached if reach else ''} "
            f"| {max(r['peak_memory_mb'] for r in rs):.0f} |")
    return '\n'.join(lines)


def markdown(runs: List[Dict[str, Any]], models) -> str:
    cols = [f'{m}@{k}' for k in KS for m in METRICS]
    lines = ['| model | seeds | ' + ' | '.join(cols) +
             ' | epochs | s/epoch | peak MB |',
             '|---' * (len(cols) + 5) + '|']
    for model in models:
        rs = [r for r in runs if r['model'] == model]
        if not rs:
            continue
        cells = [mean_std([r['test'][c] for r in rs]) for c in cols]
        lines.append(
            f'| {model} | {len(rs)} | ' + ' | '.join(cells) +
            f" | {statistics.mean(r['epochs_run'] for r in rs):.0f}"
            f" | {statistics.mean(r['seconds_per_epoch'] for r in rs):.2f}"
            f" | {max(r['peak_memory_mb'] for r in rs):.0f} |")
    return '\n'.join(lines)


def plot(runs: List[Dict[str, Any]], models, path: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, model in zip(plt.cm.tab10.colors, models):
        for i, r in enumerate(x for x in runs if x['model'] == model):
            t, v = zip(*r['curve']) if r['curve'] else ((), ())
            ax.plot(t, v, color=color, alpha=0.8, linewidth=1.2,
                    label=model if i == 0 else None)
    ax.set_xlabel('training wall time (s)')
    ax.set_ylabel('validation Recall@20')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--preset', default=None,
                        help="preset of models given without one (default: "
                        "the dataset's)")
    parser.add_argument('--models', nargs='+', default=list(MODELS),
                        help='NAME or NAME:PRESET each (default: '
                        f"{' '.join(MODELS)}); the first is the reference of "
                        'the headline table')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=None,
                        help='cap on epochs (default: the preset, with early '
                        'stopping)')
    parser.add_argument('--critic', default=None,
                        choices=('dense', 'exact', 'lowrank'),
                        help='MMSSL critic (default: the preset)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs at a time (default: 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads per run (default: CPU count / jobs)')
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error('--jobs and --threads must be at least 1')
    try:
        for label in args.models:
            parse_model(label)
            if args.preset and ':' not in label:
                parse_model(f'{label}:{args.preset}')
    except argparse.ArgumentTypeError as e:
        parser.error(f'--models: {e}')
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)

    from pyg_mmssl.files import atomic_write_json

    start = time.perf_counter()
    pairs = [(model, seed) for model in args.models for seed in args.seeds]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, args, *pair) for pair in pairs]
        errors = [f.exception() for f in futures if f.exception()]
    if errors:  # after the other runs have finished or failed
        sys.exit('\n'.join(str(e) for e in errors))
    runs = [f.result() for f in futures]
    result = {
        'command': ' '.join([osp.basename(sys.argv[0])] + sys.argv[1:]),
        'date': time.strftime('%Y-%m-%d'),
        'suite_seconds': time.perf_counter() - start,
        'jobs': args.jobs,
        'threads': args.threads,
        'environment': environment(),
        'runs': runs,
    }
    atomic_write_json(result, osp.join(args.out, 'results.json'))
    table = headline(runs, args.models) + '\n\n' + markdown(runs,
                                                              args.models)
    tmp = osp.join(args.out, 'results.md.tmp')
    with open(tmp, 'w') as f:
        f.write(f"Test metrics at the best validation epoch, mean ± std over "
                f"seeds {args.seeds}; {result['date']}, "
                f"{result['environment']['platform']}, "
                f"{result['environment']['cpu_count']} CPUs, {args.jobs} "
                f"run(s) at a time with {args.threads} thread(s) each; "
                f"`{result['command']}`\n\n{table}\n")
    os.replace(tmp, osp.join(args.out, 'results.md'))
    plot(runs, args.models, osp.join(args.out, 'val_recall.png'))
    print(table)
    return result


if __name__ == '__main__':
    main()
