r"""Hyper-parameter search with `Optuna <https://optuna.org>`_: a study of
one model on one dataset, stored in ``<out>/study.db`` (SQLite), so that an
interrupted study continues where it stopped.

Each trial draws its options from the search space (TPE sampler), trains
with :class:`~pyg_mmssl.train.Trainer` and is scored by its best validation
Recall@20,

.. math::
    \max_{e \le E} \mathrm{Recall@20}_{\mathrm{val}}(\theta_e),

reported after every validation so that a pruner can stop a trial whose
curve falls behind. The test split is never ranked during a study.
"""
import fcntl
import importlib
import json
import logging
import multiprocessing as mp
import os
import os.path as osp
import queue
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from typing import (Any, Dict, Iterator, List, NamedTuple, Optional, Tuple,
                    Union)

import numpy as np
import torch

from pyg_mmssl.datasets import load_dataset
from pyg_mmssl.device import resolve_device
from pyg_mmssl.nn.models import MODELS
from pyg_mmssl.presets import MODEL_CONFIGS, build_model, override, preset, \
    preset_names
from pyg_mmssl.presets.config_file import config_dict
from pyg_mmssl.train import SELECTION_METRIC, NonFiniteLoss, Trainer, \
    TrainConfig, seed_everything
from pyg_mmssl.tune.report import is_finished, write_reports
from pyg_mmssl.tune.space import check_space, default_space, load_space, \
    suggest

log = logging.getLogger(__name__)

STUDY_FILE = 'study.db'


class TuneResult(NamedTuple):
    r"""What :func:`tune` returns: the content of ``best.json``, the trials
    the study holds that ran to their end, and the trials this call
    started."""
    best: Dict[str, Any]
    trials: int
    ran: int


class NoTrialCompleted(RuntimeError):
    r"""A study ended without a complete trial (all were pruned or failed),
    so it has no best configuration; its trials table says why."""


class MissingDependency(ImportError):
    r"""A package that ``pyg-mmssl tune`` needs is not installed."""


def default_pruner():
    r"""The pruner of a study unless one is given: a trial is stopped when
    its validation Recall@20 at an epoch is below the median of the earlier
    trials' at that epoch, once 5 trials have finished and from epoch 10
    on (:class:`optuna.pruners.MedianPruner`)."""
    import optuna
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"pyg-mmssl tune needs {module}: pip "
                                f"install 'pyg_mmssl[tune]'") from None


def tune(model: str, dataset: str, trials: int, out: str,
         space: Union[None, str, Dict[str, Any]] = None,
         timeout: Optional[float] = None, jobs: int = 1, seed: int = 0,
         root: Optional[str] = None, inter: Optional[str] = None,
         preset_name: Optional[str] = None, epochs: Optional[int] = None,
         patience: Optional[int] = None, device: str = 'auto',
         pruner: Any = None,
         enqueue: Union[None, str, List[Dict[str, Any]]] = None,
         options: Optional[Dict[str, Any]] = None) -> TuneResult:
    r"""Searches the options of ``model`` on ``dataset`` for the best
    validation Recall@20, and writes ``best.json``, ``trials.csv``,
    ``trials.md`` and ``history.png`` into ``out``. Raises
    :class:`NoTrialCompleted` if no trial of the study completed.

    Args:
        model (str): A name of :data:`~pyg_mmssl.presets.MODEL_CONFIGS`.
        dataset (str): A name of :func:`~pyg_mmssl.datasets.load_dataset`.
        trials (int): Run until the study holds this many trials that ran
            to their end (complete, pruned, or stopped by a non-finite
            loss); trials of an earlier, interrupted call count.
        out (str): The study's folder (``study.db`` and the reports).
        space (str or dict, optional): A search space, or the path of a
            JSON or YAML file holding one (see :mod:`pyg_mmssl.tune.space`).
            It replaces the model's default space. (default: :obj:`None`,
            :func:`~pyg_mmssl.tune.space.default_space`)
        timeout (float, optional): Start no trial after this many seconds
            (running trials finish). (default: :obj:`None`)
        jobs (int): Trials run at once, each in its own process with its
            share of the CPU cores. (default: :obj:`1`)
        seed (int): Seeds the sampler; trial :math:`n` trains with seed
            ``seed + n``. (default: :obj:`0`)
        root (str, optional): The dataset's folder. (default: :obj:`None`)
        inter (str, optional): The ``.inter`` file of an ``mmrec`` folder.
            (default: :obj:`None`)
        preset_name (str, optional): The preset the trials start from.
            (default: :obj:`None`, the dataset's, else the model's
            ``"default"``)
        epochs (int, optional): Most epochs per trial. (default:
            :obj:`None`, the preset's)
        patience (int, optional): Early-stopping patience of a trial.
            (default: :obj:`None`, the preset's)
        device (str): ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            (default: :obj:`"auto"`)
        pruner (optuna.pruners.BasePruner, optional): (default:
            :obj:`None`, :func:`default_pruner`)
        enqueue (str or list, optional): Configurations a new study tries
            first (e.g. the paper's values), as a list of ``{option:
            value}`` of searched options (those left out are sampled), or
            the path of a JSON file holding one; they count among the
            ``trials``. Ignored when the study exists. (default:
            :obj:`None`)
        options (dict, optional): Options of the ``recbole`` and ``ml-100k``
            loaders (see :func:`~pyg_mmssl.datasets.load_dataset`); part of
            what makes trials comparable. (default: :obj:`None`)
    """
    if model in MODELS and not MODELS[model].trainable:
        raise ValueError(f"{model} has no parameters and nothing to tune: "
                         f"pyg-mmssl train --model {model} evaluates it")
    _require('optuna')
    _require('matplotlib')
    for name, value in (('trials', trials), ('jobs', jobs)):
        if value < 1:
            raise ValueError(f"--{name} must be positive, got {value}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {timeout}")
    if isinstance(space, str):
        space = load_space(space, model)
    elif space is None:
        space = default_space(model)
    else:
        space = check_space(space, model)
    first = _check_enqueue(enqueue, space)
    name = preset_name or dataset
    model_cfg, train_cfg = preset(model, name, strict=preset_name is not None)
    train_cfg = override(train_cfg, {'epochs': epochs, 'patience': patience,
                                     'device': device, 'quiet': True})
    resolve_device(train_cfg.device)  # an absent device fails before a trial
    # What makes trials comparable; a study continues only with the same.
    options = {k: v for k, v in (options or {}).items() if v is not None}
    # (Only when given: studies set up before the options existed continue.)
    extra = {'dataset_options': options} if options else {}
    setup = json.loads(json.dumps(config_dict(
        model, dataset, name if name in preset_names(model) else 'default',
        model_cfg, train_cfg, inter=inter, space=space, seed=seed, **extra)))
    job = {'setup': setup, 'out': out, 'trials': trials, 'jobs': jobs,
           'root': root, 'pruner': pruner,
           'deadline': None if timeout is None else time.time() + timeout,
           'model_config': asdict(model_cfg),
           'train_config': asdict(train_cfg)}
    # Loaded here: a bad dataset fails before the study exists, and workers
    # find the processed cache built once.
    data = load_dataset(dataset, root, inter=inter, options=options)

    with _locked(out):
        study = _open_study(setup, out)
        if not study.trials:
            for params in first:
                study.enqueue_trial(params)
        before = len(study.trials)
        try:
            if sum(map(is_finished, study.trials)) < trials:
                if jobs == 1:
                    _work(job, 0, data)
                else:
                    del data  # each worker loads its own
                    _run_workers(job)
        finally:
            done = study.trials
            best = write_reports(done, setup, out)
    finished = sum(map(is_finished, done))
    if best is None:
        raise NoTrialCompleted(f"no trial of the study in '{out}' completed "
                               f"({finished} ran to their end, see "
                               f"{osp.join(out, 'trials.md')}): no best.json")
    return TuneResult(best, finished, len(done) - before)


def _check_enqueue(enqueue, space: Dict[str, Any]) -> List[Dict[str, Any]]:
    r"""The configurations of ``enqueue`` (a list, or a JSON file of one),
    each checked against the searched options of ``space``, or one line of
    :class:`ValueError`."""
    where = 'enqueue'
    if isinstance(enqueue, str):
        where = f"enqueue file '{enqueue}'"
        try:
            with open(enqueue) as f:
                enqueue = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: cannot read it as JSON ({e})") \
                from None
    if enqueue is None:
        return []
    if not isinstance(enqueue, list) or not all(
            isinstance(c, dict) for c in enqueue):
        raise ValueError(f"{where} must be a list of {{option: value}} "
                         f"objects")
    searched = {k for k, v in space.items() if isinstance(v, dict)}
    for i, params in enumerate(enqueue):
        for key, value in params.items():
            if key not in searched:
                raise ValueError(f"{where}, configuration {i}: '{key}' is "
                                 f"not searched by the space (searched: "
                                 f"{', '.join(sorted(searched))})")
            spec = space[key]
            if spec['type'] == 'categorical':
                ok, allowed = value in spec['choices'], \
                    f"choices {spec['choices']}"
            else:
                ok = not isinstance(value, bool) and isinstance(
                    value, (int, float)) and \
                    spec['low'] <= value <= spec['high']
                allowed = f"range [{spec['low']}, {spec['high']}]"
            if not ok:
                raise ValueError(f"{where}, configuration {i}: {key}="
                                 f"{value!r} is outside the space's "
                                 f"{allowed}")
    return enqueue


@contextmanager
def _locked(out: str) -> Iterator[None]:
    r"""Holds ``<out>/.lock`` (one :func:`tune` per folder at a time, so
    that a trial left running in the study belongs to a process that
    ended)."""
    if osp.exists(out) and not osp.isdir(out):
        raise FileExistsError(f"output folder '{out}' is a file; pass a "
                              f"folder")
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, '.lock'), 'w') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"'{out}' is in use by another pyg-mmssl tune "
                             f"(--jobs runs trials in parallel)") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _storage(out: str):
    import optuna
    url = f"sqlite:///{osp.abspath(osp.join(out, STUDY_FILE))}"
    # Several processes write one SQLite file: wait for its lock.
    return optuna.storages.RDBStorage(
        url, engine_kwargs={'connect_args': {'timeout': 60}})


def _study_name(setup: Dict[str, Any]) -> str:
    return f"{setup['model']}-{setup['dataset']}"


def _open_study(setup: Dict[str, Any], out: str):
    r"""The study in ``out``: created, or loaded after checking that it was
    set up the same way, with the trials left running by a process that
    ended marked as failed and ``interrupted``."""
    import optuna
    from optuna.trial import TrialState

    storage, name = _storage(out), _study_name(setup)
    path = osp.join(out, STUDY_FILE)
    names = optuna.get_all_study_names(storage)
    other = [n for n in names if n != name]
    if other:
        raise ValueError(f"'{path}' holds the study '{other[0]}'; pass "
                         f"another --out for {name}")
    if not names:
        study = optuna.create_study(storage=storage, study_name=name,
                                    direction='maximize')
        study.set_user_attr('setup', setup)
        return study
    study_id = storage.get_study_id_from_name(name)
    old = storage.get_study_user_attrs(study_id).get('setup')
    if old is None:
        raise ValueError(f"'{path}' holds a study that pyg-mmssl tune did "
                         f"not make; pass another --out")
    differ = _first_difference(old, setup)
    if differ is not None:
        key, was, now = differ
        raise ValueError(f"'{path}' holds a study with {key}={was!r}, this "
                         f"call asks for {now!r}: continue it with the same "
                         f"options, or pass another --out")
    for trial in storage.get_all_trials(study_id, deepcopy=False,
                                        states=(TrialState.RUNNING, )):
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            study_id, trial.number)
        storage.set_trial_user_attr(trial_id, 'interrupted', True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        log.info("trial %d was left running by an interrupted study; marked "
                 "failed", trial.number)
    return optuna.load_study(study_name=name, storage=storage)


def _first_difference(old: Any, new: Any, key: str = ''
                      ) -> Optional[Tuple[str, Any, Any]]:
    r"""``(dotted key, old value, new value)`` of the first difference
    between two JSON values, or :obj:`None`."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(k), new.get(k),
                                      f'{key}.{k}' if key else k)
            if found is not None:
                return found
        return None
    return None if old == new else (key, old, new)


def _run_workers(job: Dict[str, Any]):
    r"""Runs :func:`_work` in ``job['jobs']`` processes. The first error a
    worker raises stops the others and is raised here."""
    ctx = mp.get_context('spawn')
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(job, i, errors),
                         daemon=True) for i in range(job['jobs'])]
    try:
        for p in procs:
            p.start()
        while True:
            try:  # the first error a worker reports, raised here
                raise errors.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        try:  # one reported just before its worker ended
            raise errors.get(timeout=0.5)
        except queue.Empty:
            pass
        failed = [(i, p.exitcode) for i, p in enumerate(procs)
                  if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"tune worker {failed[0][0]} exited with code "
                               f"{failed[0][1]}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


def _worker_main(job: Dict[str, Any], worker: int, errors):
    if 'OMP_NUM_THREADS' not in os.environ:  # the workers share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job['jobs']))
    try:
        _work(job, worker)
    except BaseException as e:
        if not isinstance(e, (ValueError, KeyboardInterrupt)):
            traceback.print_exc()
        errors.put(e)
        raise SystemExit(1)


def _work(job: Dict[str, Any], worker: int, data=None):
    r"""Runs trials of the study in ``job['out']`` until it holds
    ``job['trials']`` finished or running ones, or the time is past
    ``job['deadline']`` (a :func:`time.time`). The dataset (``data``) is
    loaded once, if not given."""
    import optuna
    from optuna.trial import TrialState

    setup, name = job['setup'], _study_name(job['setup'])
    if data is None:
        data = load_dataset(setup['dataset'], job['root'],
                            inter=setup['inter'],
                            options=setup.get('dataset_options'))
    storage = _storage(job['out'])
    # The sampler's seed differs from earlier calls' and other workers'.
    started = len(storage.get_all_trials(
        storage.get_study_id_from_name(name), deepcopy=False))
    sampler_seed = np.random.SeedSequence(
        [setup['seed'], worker, started]).generate_state(1)[0]
    study = optuna.load_study(
        study_name=name, storage=storage,
        sampler=optuna.samplers.TPESampler(seed=int(sampler_seed)),
        pruner=job['pruner'] if job['pruner'] is not None
        else default_pruner())

    while job['deadline'] is None or time.time() < job['deadline']:
        # Counting and starting a trial under one lock: workers never start
        # more trials than asked for between them.
        with _file_lock(osp.join(job['out'], '.trials.lock')):
            trials = study.get_trials(deepcopy=False)
            active = sum(is_finished(t) or t.state == TrialState.RUNNING
                         for t in trials)
            if active >= job['trials']:
                break
            trial = study.ask()
        try:
            value = _trial(trial, data, job)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except NonFiniteLoss:
            study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    r"""An exclusive lock on ``path`` (created if missing), held for the
    ``with`` block, waiting for other processes that hold it."""
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _trial(trial, data, job: Dict[str, Any]) -> float:
    r"""Trains one trial's configuration and returns its best validation
    Recall@20; raises :class:`optuna.TrialPruned` when the pruner stops
    it."""
    import optuna

    setup = job['setup']
    values = {**suggest(trial, setup['space']),
              'seed': setup['seed'] + trial.number}

    def options(base: Dict[str, Any]) -> Dict[str, Any]:
        return {**base, **{k: v for k, v in values.items() if k in base}}

    model_cfg = MODEL_CONFIGS[setup['model']](**options(job['model_config']))
    train_cfg = TrainConfig(**options(job['train_config']))
    trial.set_user_attr('config', config_dict(
        setup['model'], setup['dataset'], setup['preset'], model_cfg,
        train_cfg))
    seed_everything(train_cfg.seed)  # the model's initialisation too
    model = build_model(setup['model'], model_cfg, data)
    trainer = Trainer(model, data, train_cfg)  # out=None: writes nothing
    epochs = 0

    def report(epoch: int, val: Dict[str, float]):
        nonlocal epochs
        epochs = epoch
        trial.report(val[SELECTION_METRIC], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"at epoch {epoch}")

    try:
        result = trainer.fit(on_epoch=report, test=False)
        epochs = result['epochs_run']
    except NonFiniteLoss as e:
        trial.set_user_attr('diverged', str(e))
        raise
    except KeyboardInterrupt:
        trial.set_user_attr('interrupted', True)
        raise
    finally:
        trial.set_user_attr('epochs', epochs)
    trial.set_user_attr('best_epoch', result['best_epoch'])
    return result['val'][SELECTION_METRIC]
