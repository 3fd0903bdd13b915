r"""Pieces the benchmark scripts share: a preset trainer for a config
string, one fresh process per measurement, step timing by the
``torch.profiler`` ranges that the model and trainer mark, and the runs of
a suite folder."""
import argparse
import glob
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
from typing import Dict, List

# Ranges marked by Trainer.train_step (step.*) and MMSSL.loss; 'step.loss'
# holds 'mmssl.generator'.
RANGES = ['step.forward', 'step.critic', 'mmssl.generator', 'step.refresh',
          'step.backward', 'step.optimizer']
STEP_PARTS = ['step.forward', 'step.critic', 'step.loss', 'step.refresh',
              'step.backward', 'step.optimizer']


def dataset_parser(doc: str, steps: int, steps_help: str = 'steps to time'
                   ) -> argparse.ArgumentParser:
    r"""The options of a benchmark that measures configs on a dataset, each
    in a fresh worker process (see :func:`dataset_worker`)."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--steps', type=int, default=steps, help=steps_help)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', default=None)
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    return parser


def dataset_worker(script: str, args: argparse.Namespace,
                   config: str) -> dict:
    r""":func:`run_worker` for one ``config`` with the options of
    :func:`dataset_parser`."""
    return run_worker(script, [
        '--worker', config, '--dataset', args.dataset, '--steps',
        str(args.steps), '--threads', str(args.threads), '--device',
        args.device
    ] + (['--root', args.root] if args.root else []))


def save_json(args: argparse.Namespace, rows: List[dict]):
    r"""Writes ``{"args", "results"}`` to ``args.json`` if it is set."""
    if args.json:
        from pyg_mmssl.files import atomic_write_json
        atomic_write_json({'args': vars(args), 'results': rows}, args.json)


def preset_trainer(config: str, data, dataset: str, device: str = 'cpu'):
    r"""A :class:`~pyg_mmssl.train.Trainer` (writing nothing) for
    ``config`` = ``"model"``, ``"model:critic"`` or either followed by
    ``":field=value"`` model overrides (e.g.
    ``"mmssl:lowrank:refresh_every=59"``), with ``dataset``'s preset, or
    another one named as ``"model@preset"`` (e.g.
    ``"mmssl@tiktok-paper"``). Naming a critic turns structure learning on
    unless an override says otherwise."""
    import dataclasses

    from pyg_mmssl.nn.models import MODELS
    from pyg_mmssl.presets import override, preset
    from pyg_mmssl.train import Trainer

    model_name, *parts = config.split(':')
    model_name, _, preset_name = model_name.partition('@')
    try:
        model_cfg, train_cfg = preset(model_name, preset_name or dataset,
                                      strict=bool(preset_name))
    except ValueError as e:
        sys.exit(f"'{config}': {e}")
    values = {}
    for part in parts:
        key, _, value = part.rpartition('=')
        if key:  # field=value, typed like the field's default
            if not hasattr(model_cfg, key):
                sys.exit(f"'{config}': {model_name} has no option '{key}'")
            default = getattr(model_cfg, key)
            values[key] = (value.lower() in ('1', 'true') if isinstance(
                default, bool) else type(default)(value))
        else:  # a critic named is a critic used (presets may turn it off)
            values['critic'] = value
            values.setdefault('adversarial', True)
    model_cfg = override(model_cfg, values)
    train_cfg = override(train_cfg, {'device': device, 'quiet': True})
    model = MODELS[model_name].from_data(data,
                                         **dataclasses.asdict(model_cfg))
    return Trainer(model, data, train_cfg)


def profiled_steps(trainer, batches, steps: int) -> Dict[str, float]:
    r"""Runs ``steps`` training steps under :mod:`torch.profiler`;
    milliseconds per step in each of :data:`RANGES`, plus ``"step"`` (the
    whole step) and ``"other"`` (the step outside the ranges)."""
    from torch.profiler import ProfilerActivity, profile

    state = {'step': 0}
    # The ranges are read off the CPU timeline (on CUDA, profile_step.py
    # makes launches blocking so that they hold their kernels' time).
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(next(batches), state)
    totals = {e.key: e.cpu_time_total / 1e3 / steps
              for e in prof.key_averages()
              if e.key in RANGES + STEP_PARTS}
    row = {name: totals.get(name, 0.) for name in RANGES}
    row['step'] = sum(totals.get(name, 0.) for name in STEP_PARTS)
    row['other'] = row['step'] - sum(row[name] for name in RANGES)
    return row


def run_worker(script: str, args: List[str]) -> dict:
    r"""Runs ``script`` with ``args`` in a fresh Python process (so that
    peak memory is its own) and returns the JSON object it prints last;
    exits with its error output if it fails."""
    out = subprocess.run([sys.executable, script] + args, capture_output=True,
                         text=True,
                         env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_std(values: List[float]) -> str:
    r"""``mean ± sample std`` to 4 decimals (one value alone, none empty)."""
    if len(values) <= 1:
        return f'{values[0]:.4f}' if values else ''
    return f'{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}'


def load_runs(root: str, model: str) -> List[Dict]:
    r"""The runs of ``model`` in suite directory ``root``, by seed: each a
    dict with ``seed``, ``val`` (validation Recall@20 per epoch) and
    ``metrics`` (``metrics.json``, or ``None`` while the run is unfinished).
    """
    runs = []
    for path in glob.glob(osp.join(root, 'runs', f'{model}-seed*')):
        match = re.fullmatch(rf'{re.escape(model)}-seed(\d+)',
                             osp.basename(path))
        hist = osp.join(path, 'history.json')
        if match is None or not osp.exists(hist):
            continue
        with open(hist) as f:
            history = json.load(f)
        metrics = None
        if osp.exists(osp.join(path, 'metrics.json')):
            with open(osp.join(path, 'metrics.json')) as f:
                metrics = json.load(f)
        runs.append({
            'seed': int(match.group(1)),
            'val': [h['val']['recall@20'] for h in history if 'val' in h],
            'metrics': metrics,
        })
    if not runs:
        raise SystemExit(f"no '{model}' runs with a history.json in "
                         f"{osp.join(root, 'runs')}")
    return sorted(runs, key=lambda r: r['seed'])
