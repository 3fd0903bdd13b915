r"""Pieces the benchmark scripts share: a preset trainer for a config
string, one fresh process per measurement, and step timing by the
``torch.profiler`` ranges that the model and trainer mark."""
import json
import os
import subprocess
import sys
from typing import Dict, List

# Ranges marked by MMSSL.loss and Trainer.train_step.
RANGES = ['mmssl.forward', 'mmssl.critic', 'mmssl.generator',
          'mmssl.refresh', 'step.backward', 'step.optimizer']


def preset_trainer(config: str, data, dataset: str, device: str = 'cpu'):
    r"""A :class:`~pyg_mmssl.train.Trainer` (writing nothing) for
    ``config`` = ``"model"`` or ``"model:critic"``, with ``dataset``'s
    preset."""
    import dataclasses

    from pyg_mmssl.nn.models import MODELS
    from pyg_mmssl.presets import override, preset
    from pyg_mmssl.train import Trainer

    model_name, _, critic = config.partition(':')
    model_cfg, train_cfg = preset(model_name, dataset)
    if critic:
        model_cfg = override(model_cfg, {'critic': critic})
    train_cfg = override(train_cfg, {'device': device, 'quiet': True})
    model = MODELS[model_name].from_data(data,
                                         **dataclasses.asdict(model_cfg))
    return Trainer(model, data, train_cfg)


def profiled_steps(trainer, batches, steps: int) -> Dict[str, float]:
    r"""Runs ``steps`` training steps under :mod:`torch.profiler`;
    milliseconds per step in each of :data:`RANGES`, plus ``"step"`` (the
    whole step) and ``"other"`` (the step outside the ranges)."""
    from torch.profiler import profile

    state = {'step': 0}
    with profile() as prof:
        for _ in range(steps):
            trainer.train_step(next(batches), state)
    totals = {e.key: e.cpu_time_total / 1e3 / steps
              for e in prof.key_averages()
              if e.key in RANGES + ['step.loss']}
    row = {name: totals.get(name, 0.) for name in RANGES}
    row['step'] = (totals.get('step.loss', 0.) + row['step.backward'] +
                   row['step.optimizer'])
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
