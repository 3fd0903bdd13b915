r"""A study over several splits at once: like ``pyg-mmssl tune``, but each
trial trains the same options on every split given (``--split NAME=ROOT``,
``ROOT`` a folder in the MMSSL json format, or ``tiktok`` for the shipped
split) and is scored by the mean of their best validation Recall@20,

.. math::
    \frac{1}{S} \sum_{s=1}^{S} \max_{e} \mathrm{Recall@20}_{\mathrm{val},s}
    (\theta_e),

so that the options chosen are those that do well on every split rather
than on one (the issue's rule for a default). TPE sampler, the median
pruner on each split's curve in turn, the study in ``<out>/study.db`` (an
interrupted study continues), the test split never ranked. Each trial also
keeps every split's per-epoch validation curve and seconds, to read off
how soon it reaches a target.

    python benchmarks/tune_splits.py --model mmssl --preset tiktok \
        --split shipped=tiktok --split resplit=results/tiktok-seed7 \
        --space benchmarks/spaces/mmssl-batch2048.json --trials 20 \
        --jobs 2 --out results/tune-splits

Writes ``<out>/trials.md`` (one row per trial: its options, each split's
best validation Recall@20 and best epoch, the mean).
"""
import argparse
import json
import multiprocessing as mp
import os
import os.path as osp
import time
from dataclasses import asdict
from typing import Dict, List


def load_split(root: str):
    r"""``tiktok`` or ``synthetic`` (the datasets), else a folder in the
    MMSSL json format."""
    from pyg_mmssl.datasets import load_dataset
    if root in ('tiktok', 'synthetic'):
        return load_dataset(root, None)
    return load_dataset('mmssl', root)


def run_split(trial, step0: int, data, model: str, model_cfg, train_cfg):
    r"""Trains one split; returns (best validation Recall@20, best epoch,
    per-epoch validation Recall@20, mean training seconds per epoch). Reports
    each epoch to the pruner at step ``step0 + epoch``."""
    import optuna

    from pyg_mmssl.presets import build_model
    from pyg_mmssl.train import SELECTION_METRIC, Trainer, seed_everything

    seed_everything(train_cfg.seed)
    trainer = Trainer(build_model(model, model_cfg, data), data, train_cfg)
    curve: List[float] = []

    def report(epoch: int, val: Dict[str, float]):
        curve.append(val[SELECTION_METRIC])
        trial.report(val[SELECTION_METRIC], step0 + epoch)
        if trial.should_prune():
            trial.set_user_attr(f'curve_{step0}', curve)
            raise optuna.TrialPruned(f'at epoch {epoch}')

    result = trainer.fit(on_epoch=report, test=False)
    return (result['val'][SELECTION_METRIC], result['best_epoch'], curve,
            result['seconds_per_epoch'])


def work(args, worker: int):
    import optuna
    import torch

    from pyg_mmssl.presets import MODEL_CONFIGS, preset
    from pyg_mmssl.train import NonFiniteLoss, TrainConfig
    from pyg_mmssl.tune.space import load_space, suggest
    from pyg_mmssl.tune.study import _storage, default_pruner

    torch.set_num_threads(args.threads)
    splits = [(name, load_split(root)) for name, root in
              (s.split('=', 1) for s in args.split)]
    space = load_space(args.space, args.model)
    model_cfg0, train_cfg0 = preset(args.model, args.preset, strict=True)
    model_cfg0, train_cfg0 = asdict(model_cfg0), asdict(train_cfg0)
    train_cfg0.update(quiet=True, device='cpu')
    train_cfg0.update({k: v for k, v in (('epochs', args.epochs),
                                         ('patience', args.patience))
                       if v is not None})
    storage = _storage(args.out)
    study = optuna.load_study(
        study_name='splits', storage=storage,
        sampler=optuna.samplers.TPESampler(seed=args.seed * 100 + worker +
                                           len(storage.get_all_trials(
                                               storage.get_study_id_from_name(
                                                   'splits')))),
        pruner=default_pruner())
    deadline = None if args.timeout is None else \
        time.time() + args.timeout
    while deadline is None or time.time() < deadline:
        if len(study.get_trials(deepcopy=False)) >= args.trials:
            break
        trial = study.ask()
        values = {**suggest(trial, space),
                  'seed': args.seed + trial.number}
        mc = MODEL_CONFIGS[args.model](**{
            **model_cfg0, **{k: v for k, v in values.items()
                             if k in model_cfg0}})
        tc = TrainConfig(**{**train_cfg0, **{k: v for k, v in values.items()
                                             if k in train_cfg0}})
        bests = []
        try:
            for s, (name, data) in enumerate(splits):
                best, epoch, curve, seconds = run_split(
                    trial, 1000 * s, data, args.model, mc, tc)
                trial.set_user_attr(name, {'best': best, 'epoch': epoch,
                                           'curve': curve,
                                           'seconds': seconds})
                bests.append(best)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except NonFiniteLoss:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, sum(bests) / len(bests))
        write_table(study, [n for n, _ in splits], args.out)


def write_table(study, names: List[str], out: str):
    from pyg_mmssl.files import atomic_write_text
    rows = []
    keys = sorted({k for t in study.trials for k in t.params})
    head = ['trial', 'state', *keys, *(f'{n} val (epoch)' for n in names),
            'mean']
    rows.append('| ' + ' | '.join(head) + ' |')
    rows.append('|' + '---|' * len(head))
    for t in study.trials:
        cells = [str(t.number), t.state.name.lower()]
        cells += [f'{t.params[k]:.3g}' if isinstance(t.params.get(k), float)
                  else str(t.params.get(k, '')) for k in keys]
        for n in names:
            a = t.user_attrs.get(n)
            cells.append(f"{a['best']:.4f} ({a['epoch']})" if a else '')
        cells.append(f'{t.value:.4f}' if t.value is not None else '')
        rows.append('| ' + ' | '.join(cells) + ' |')
    atomic_write_text('\n'.join(rows) + '\n', osp.join(out, 'trials.md'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='mmssl')
    parser.add_argument('--preset', default='tiktok')
    parser.add_argument('--split', action='append', required=True,
                        metavar='NAME=ROOT')
    parser.add_argument('--space', required=True)
    parser.add_argument('--enqueue', default=None)
    parser.add_argument('--trials', type=int, required=True)
    parser.add_argument('--timeout', type=float, default=None)
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--patience', type=int, default=None)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)

    import optuna

    from pyg_mmssl.tune.study import _storage
    os.makedirs(args.out, exist_ok=True)
    storage = _storage(args.out)
    study = optuna.create_study(storage=storage, study_name='splits',
                                direction='maximize', load_if_exists=True)
    if not study.trials and args.enqueue:
        with open(args.enqueue) as f:
            for params in json.load(f):
                study.enqueue_trial(params)
    if args.jobs == 1:
        work(args, 0)
    else:
        procs = [mp.get_context('spawn').Process(target=work, args=(args, i))
                 for i in range(args.jobs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    study = optuna.load_study(study_name='splits', storage=storage)
    write_table(study, [s.split('=', 1)[0] for s in args.split], args.out)
    return study


if __name__ == '__main__':
    main()
