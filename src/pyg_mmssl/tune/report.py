r"""What a study leaves in its folder: ``best.json`` (the best trial's
configuration, which ``pyg-mmssl train --config`` reads), the trials table
(``trials.csv``, ``trials.md``) and the optimisation history
(``history.png``), all written atomically from the study's storage."""
import csv
import io
import os.path as osp
from typing import Any, Dict, List, Optional

from pyg_mmssl.files import atomic_write_bytes, atomic_write_json, \
    atomic_write_text

METRIC = 'val recall@20'
COLUMNS = ('trial', 'state', 'value', 'epochs', 'seconds')


def is_finished(trial) -> bool:
    r"""Whether an Optuna trial ran to its end: complete, pruned, or failed
    on a non-finite loss (a diverging configuration is a result too).
    Interrupted trials are not."""
    from optuna.trial import TrialState
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and 'diverged' in trial.user_attrs)


def _note(trial) -> str:
    if trial.state.name == 'PRUNED' and trial.intermediate_values:
        epoch = max(trial.intermediate_values)
        return (f"pruned at epoch {epoch} ({METRIC} "
                f"{trial.intermediate_values[epoch]:.4f})")
    if 'diverged' in trial.user_attrs:
        return 'non-finite loss'
    if trial.user_attrs.get('interrupted'):
        return 'interrupted'
    return ''


def trial_rows(trials: List[Any], params: List[str]) -> List[Dict[str, Any]]:
    r"""One row per trial: its number, state, value (validation
    Recall@20, complete trials only), epochs trained, seconds, the value of
    each searched option in ``params``, and a note (where it was pruned,
    why it failed)."""
    return [{
        'trial': t.number,
        'state': t.state.name.lower(),
        'value': t.value,
        'epochs': t.user_attrs.get('epochs'),
        'seconds': t.duration.total_seconds() if t.duration else None,
        **{p: t.params.get(p) for p in params},
        'note': _note(t),
    } for t in trials]


def _csv(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: '' if v is None else v for k, v in row.items()}
                     for row in rows)
    return buf.getvalue()


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ''
    if key == 'value':
        return f'{value:.4f}'
    if key == 'seconds':
        return f'{value:.1f}'
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def _markdown(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    lines = ['| ' + ' | '.join(columns) + ' |', '|---' * len(columns) + '|']
    lines += ['| ' + ' | '.join(_cell(c, row[c]) for c in columns) + ' |'
              for row in rows]
    return '\n'.join(lines) + '\n'


def history_png(trials: List[Any], title: str) -> bytes:
    r"""The optimisation history as a PNG: each complete trial's value,
    each pruned trial's last validation Recall@20, and the best value so
    far."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout='constrained')
    ax = fig.subplots()
    complete = [t for t in trials if t.state.name == 'COMPLETE']
    pruned = [t for t in trials
              if t.state.name == 'PRUNED' and t.intermediate_values]
    ax.plot([t.number for t in complete], [t.value for t in complete], 'o',
            label='complete')
    if pruned:
        ax.plot([t.number for t in pruned],
                [t.intermediate_values[max(t.intermediate_values)]
                 for t in pruned], 'x', color='grey',
                label='pruned (last validation)')
    best, xs, ys = None, [], []
    for t in sorted(complete, key=lambda t: t.number):
        best = t.value if best is None else max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where='post', label='best so far')
    ax.set_xlabel('trial')
    ax.set_ylabel('validation Recall@20')
    ax.set_title(title)
    ax.legend(loc='lower right')
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    return buf.getvalue()


def write_reports(trials: List[Any], setup: Dict[str, Any],
                  out: str) -> Optional[Dict[str, Any]]:
    r"""Writes ``trials.csv``, ``trials.md``, ``history.png`` and, if a
    trial completed, ``best.json`` into ``out`` for the Optuna ``trials``
    of a study set up as ``setup``. Returns the content of ``best.json``
    (:obj:`None` without a complete trial)."""
    params = [k for k, v in setup['space'].items() if isinstance(v, dict)]
    columns = [*COLUMNS, *params, 'note']
    rows = trial_rows(trials, params)
    atomic_write_text(_csv(rows, columns), osp.join(out, 'trials.csv'))
    atomic_write_text(_markdown(rows, columns), osp.join(out, 'trials.md'))
    title = (f"{setup['model']} on {setup['dataset']}: "
             f"{sum(map(is_finished, trials))} trials")
    atomic_write_bytes(history_png(trials, title),
                       osp.join(out, 'history.png'))
    complete = [t for t in trials if t.state.name == 'COMPLETE']
    if not complete:
        return None
    best = max(complete, key=lambda t: (t.value, -t.number))
    content = {**best.user_attrs['config'], 'study': {
        'metric': METRIC, 'value': best.value, 'trial': best.number,
        'best_epoch': best.user_attrs.get('best_epoch'),
        'trials': sum(map(is_finished, trials))}}
    atomic_write_json(content, osp.join(out, 'best.json'))
    return content
