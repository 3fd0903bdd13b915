r"""``pyg-mmssl``: train, evaluate, recommend and inspect datasets.

Errors caused by input print one line and exit with status 2 (``--debug``
shows the traceback)."""
import argparse
import dataclasses
import json
import logging
import pickle
import os.path as osp
import sys
from typing import Any, Dict, List, Optional

import torch

from pyg_mmssl import distributed
from pyg_mmssl.data.graph import DataError, statistics, to_csr, \
    split_edge_index

EXIT_USAGE = 2


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


def _field_type(f: dataclasses.Field):
    if f.type in (int, 'int'):
        return int
    if f.type in (float, 'float'):
        return float
    return str


def _add_dataset_args(p: argparse.ArgumentParser):
    from pyg_mmssl.datasets import DATASETS
    p.add_argument('--dataset', required=True, choices=DATASETS)
    p.add_argument('--root', help='dataset folder (tiktok: defaults to '
                   '$PYG_MMSSL_TIKTOK or ../shared/data/tiktok)')


def build_parser() -> argparse.ArgumentParser:
    from pyg_mmssl.presets import MODEL_CONFIGS
    from pyg_mmssl.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog='pyg-mmssl', description='Multimodal recommendation with PyG.')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks on errors')
    sub = parser.add_subparsers(dest='command', required=True)

    train = sub.add_parser('train', help='train a model with early stopping')
    train.add_argument('--model', required=True, choices=sorted(MODEL_CONFIGS))
    _add_dataset_args(train)
    train.add_argument('--preset', default=None,
                       help='hyper-parameter preset (default: the dataset '
                       'name; also baby, sports)')
    train.add_argument('--out', default=None,
                       help='output folder (default: runs/<model>-<dataset>)')
    train.add_argument('--resume', action='store_true',
                       help='continue from <out>/last.pt')
    train.add_argument('--quiet', action='store_true',
                       help='no progress bars or per-epoch lines')
    train.add_argument('--nproc', type=int, default=1,
                       help='train with N processes on this machine '
                       '(torch.distributed: gloo on CPU, nccl on CUDA, one '
                       'GPU per process); torchrun works too')
    tg = train.add_argument_group('training (defaults from the preset)')
    for f in dataclasses.fields(TrainConfig):
        if f.name in ('quiet', 'discriminator_betas'):
            continue
        if f.name == 'ks':
            tg.add_argument('--ks', type=int, nargs='+', default=None)
        elif f.name == 'mask_val_at_test':
            tg.add_argument('--mask-val-at-test', action='store_true',
                            default=None, help='also exclude validation '
                            'items when ranking for test')
        else:
            tg.add_argument(_flag(f.name), type=_field_type(f), default=None)
    mg = train.add_argument_group(
        'model (defaults from the preset; each applies to the models that '
        'have it)')
    seen = set()
    for cfg in MODEL_CONFIGS.values():
        for f in dataclasses.fields(cfg):
            if f.name in seen:
                continue
            seen.add(f.name)
            if f.type in (bool, 'bool'):
                mg.add_argument(_flag('no_' + f.name), dest=f.name,
                                action='store_const', const=False,
                                default=None, help=f'ablation: without '
                                f'{f.name.replace("_", " ")}')
            else:
                mg.add_argument(_flag(f.name), type=_field_type(f),
                                choices=f.metadata.get('choices'),
                                default=None)

    ev = sub.add_parser('evaluate', help='metrics of a checkpoint')
    ev.add_argument('--checkpoint', required=True)
    ev.add_argument('--root', help='dataset folder, if it moved')
    ev.add_argument('--device', default='auto')
    ev.add_argument('--json', action='store_true', help='print JSON')

    rec = sub.add_parser('recommend', help='top-k items for a user')
    rec.add_argument('--checkpoint', required=True)
    rec.add_argument('--user', type=int, required=True, nargs='+')
    rec.add_argument('--k', type=int, default=20)
    rec.add_argument('--root', help='dataset folder, if it moved')
    rec.add_argument('--device', default='auto')

    cmp = sub.add_parser('compare', help='table of finished runs')
    cmp.add_argument('runs', nargs='+', help='run folders or metrics.json '
                     'files')

    info = sub.add_parser('info', help='dataset statistics')
    _add_dataset_args(info)
    return parser


def _build_model(name: str, model_cfg, data):
    from pyg_mmssl.nn.models import MODELS
    return MODELS[name].from_data(data, **dataclasses.asdict(model_cfg))


def cmd_train(args: argparse.Namespace) -> Dict[str, Any]:
    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.presets import MODEL_CONFIGS, override, preset

    given = {k: v for k, v in vars(args).items() if v is not None}
    model_cfg, train_cfg = preset(args.model, args.preset or args.dataset)
    model_fields = {f.name for f in dataclasses.fields(model_cfg)}
    other = {f.name for c in MODEL_CONFIGS.values()
             for f in dataclasses.fields(c)} - model_fields
    wrong = sorted(k for k in given if k in other)
    if wrong:
        raise ValueError(f"option {_flag(wrong[0])} does not apply to model "
                         f"'{args.model}'")
    model_cfg = override(model_cfg, given)
    if 'ks' in given:
        given['ks'] = tuple(given['ks'])
    train_cfg = override(train_cfg, given)
    train_cfg.__post_init__()

    out = args.out or osp.join('runs', f'{args.model}-{args.dataset}')
    in_group = distributed.env_has_ranks()
    if not args.resume and osp.exists(osp.join(out, 'last.pt')):
        raise FileExistsError(
            f"'{out}' already holds a run; pass --resume to continue it or "
            f"--out to start a new one (nothing was overwritten)")
    if args.nproc > 1 and not in_group:
        load_dataset(args.dataset, args.root)  # one cache build, not N
        distributed.launch(_train_rank, args.nproc, (args, ))
        with open(osp.join(out, 'metrics.json')) as f:
            return json.load(f)
    if in_group:
        device = distributed.init_from_env(train_cfg.device)
        train_cfg = override(train_cfg, {'device': str(device)})
        try:
            return _train(args, model_cfg, train_cfg, out)
        finally:
            distributed.shutdown()
    return _train(args, model_cfg, train_cfg, out)


def _train(args, model_cfg, train_cfg, out: str) -> Dict[str, Any]:
    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.train import Trainer, format_table, seed_everything

    data = load_dataset(args.dataset, args.root)
    seed_everything(train_cfg.seed)  # the model's initialisation too
    model = _build_model(args.model, model_cfg, data)
    meta = {
        'model': args.model,
        'model_config': dataclasses.asdict(model_cfg),
        'dataset': args.dataset,
        'root': osp.abspath(args.root) if args.root else None,
        'command': ' '.join(['pyg-mmssl'] + sys.argv[1:]),
        'world_size': distributed.get_world_size(),
    }
    trainer = Trainer(model, data, train_cfg, out=out, meta=meta)
    result = trainer.fit(resume=args.resume)
    if not distributed.is_main():
        return result
    print(f"{args.model} on {args.dataset}: best epoch {result['best_epoch']}"
          f" of {result['epochs_run']}, {result['seconds_per_epoch']:.2f} s/"
          f"epoch, peak memory {result['peak_memory_mb']:.0f} MB")
    print(format_table([('val', result['val']), ('test', result['test'])],
                       train_cfg.ks))
    print(f"results in {out}/metrics.json")
    return result


def _train_rank(args: argparse.Namespace):
    r"""One rank of ``train --nproc N`` (started by
    :func:`pyg_mmssl.distributed.launch`)."""
    logging.basicConfig(level=logging.INFO, format='%(message)s',
                        stream=sys.stderr)
    if args.quiet:
        logging.getLogger('pyg_mmssl').setLevel(logging.WARNING)
    cmd_train(args)


def load_checkpoint(path: str, root: Optional[str], device: str):
    r"""Rebuilds the dataset and model of a checkpoint written by ``train``."""
    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.presets import MODEL_CONFIGS
    from pyg_mmssl.train import resolve_device

    if not osp.exists(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        # weights_only: a checkpoint cannot run code when loaded.
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
        meta = ckpt['meta']
        name = meta['model']
    except (KeyError, TypeError, RuntimeError, EOFError,
            pickle.UnpicklingError) as e:
        raise ValueError(f"'{path}' is not a pyg-mmssl checkpoint ({e})")
    data = load_dataset(meta['dataset'], root or meta.get('root'))
    model_cfg = MODEL_CONFIGS[name](**meta['model_config'])
    model = _build_model(name, model_cfg, data)
    model.load_state_dict(ckpt['model'])
    model = model.to(resolve_device(device)).eval()
    return ckpt, data, model


def cmd_evaluate(args: argparse.Namespace) -> Dict[str, Any]:
    from pyg_mmssl.metrics import evaluate
    from pyg_mmssl.train import format_table

    ckpt, data, model = load_checkpoint(args.checkpoint, args.root,
                                        args.device)
    cfg = ckpt['config']
    U, I = model.num_users, model.num_items
    train, val, test = (to_csr(split_edge_index(data, s), U, I)
                        for s in ('train', 'val', 'test'))
    with torch.no_grad():
        emb = model.get_embedding()
    ks = tuple(cfg['ks'])
    res = {
        'val': evaluate(emb.user, emb.item, val, [train], ks),
        'test': evaluate(emb.user, emb.item, test, [train] + (
            [val] if cfg['mask_val_at_test'] else []), ks),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_table([('val', res['val']), ('test', res['test'])], ks))
    return res


def cmd_recommend(args: argparse.Namespace) -> List[List[int]]:
    _, data, model = load_checkpoint(args.checkpoint, args.root, args.device)
    users = torch.tensor(args.user)
    bad = [u for u in args.user if not 0 <= u < model.num_users]
    if bad:
        raise ValueError(f"user {bad[0]} out of range: the dataset has "
                         f"{model.num_users} users (ids 0..{model.num_users - 1})")
    if args.k <= 0:
        raise ValueError(f"--k must be positive, got {args.k}")
    top = model.recommend(users, k=args.k).tolist()
    for u, items in zip(args.user, top):
        print(f"user {u}: " + ' '.join(map(str, items)))
    return top


def cmd_compare(args: argparse.Namespace) -> str:
    rows = ['| model | dataset | best epoch | epochs | s/epoch | peak MB | '
            'test recall@20 | test ndcg@20 | test precision@20 |',
            '|---|---|---|---|---|---|---|---|---|']
    for run in args.runs:
        path = osp.join(run, 'metrics.json') if osp.isdir(run) else run
        if not osp.exists(path):
            raise FileNotFoundError(f"no metrics.json at '{path}' (has the "
                                    f"run finished?)")
        with open(path) as f:
            m = json.load(f)
        name = m['meta'].get('model', '?')
        critic = m['meta'].get('model_config', {}).get('critic')
        if critic:
            name += f' ({critic} critic)'
        t = m['test']
        rows.append(f"| {name} | {m['meta'].get('dataset', '?')} | "
                    f"{m['best_epoch']} | {m['epochs_run']} | "
                    f"{m['seconds_per_epoch']:.2f} | "
                    f"{m['peak_memory_mb']:.0f} | {t['recall@20']:.4f} | "
                    f"{t['ndcg@20']:.4f} | {t['precision@20']:.4f} |")
    table = '\n'.join(rows)
    print(table)
    return table


def cmd_info(args: argparse.Namespace) -> Dict[str, Any]:
    from pyg_mmssl.datasets import load_dataset
    stats = statistics(load_dataset(args.dataset, args.root))
    for key, value in stats.items():
        print(f"{key:22s} {value}")
    return stats


COMMANDS = {'train': cmd_train, 'evaluate': cmd_evaluate,
            'recommend': cmd_recommend, 'compare': cmd_compare,
            'info': cmd_info}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s',
                        stream=sys.stderr)
    if getattr(args, 'quiet', False):
        logging.getLogger('pyg_mmssl').setLevel(logging.WARNING)
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted (a training run continues with --resume)",
              file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError, FileExistsError,
            OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except distributed.RankFailed as e:
        print(f"error: distributed training stopped: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
