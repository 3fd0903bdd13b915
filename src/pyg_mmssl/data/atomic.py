r"""Parsing RecBole's atomic files (``<name>.inter``, ``<name>.item``, ...)
into typed columns.

An atomic file is UTF-8 text, one record per line, fields separated by tabs.
Its first line names the fields, each as ``name:type`` with a type of

* ``token``: one string (an id, a category),
* ``token_seq``: strings separated by spaces (tags, genres, title words),
* ``float``: one number,
* ``float_seq``: numbers separated by spaces (a feature vector).

A header field without a type (``user_id item_id rating``) is read as
``float`` when it is named ``rating`` or ``timestamp`` and as ``token``
otherwise. Quotes have no meaning: a field runs from one tab to the next.
"""
import re
from typing import Dict, List, NamedTuple, Sequence

import numpy as np

from pyg_mmssl.data.graph import DataError

FIELD_TYPES = ('token', 'token_seq', 'float', 'float_seq')
NUMERIC_FIELDS = ('rating', 'timestamp')
_INTEGER = re.compile(r'[+-]?[0-9]+')


class AtomicFile(NamedTuple):
    r"""The typed columns of an atomic file."""
    path: str  #: where it was read from
    types: Dict[str, str]  #: ``{field: type}`` in header order
    columns: Dict[str, list]  #: ``{field: value per record}``
    lines: List[int]  #: the file line of each record (the header is 1)

    def where(self, row: int) -> str:
        return f"{self.path}, line {self.lines[row]}"

    def __len__(self) -> int:
        return len(self.lines)


def parse_header(text: str, path: str) -> Dict[str, str]:
    r"""``{field: type}`` of a header line (see the module docstring)."""
    types: Dict[str, str] = {}
    for column in text.split('\t'):
        name, sep, kind = column.strip().partition(':')
        if not sep:
            kind = 'float' if name in NUMERIC_FIELDS else 'token'
        if not name:
            raise DataError(f"{path}, line 1: empty field name in the header "
                            f"(expected tab-separated 'name:type' fields)")
        if kind not in FIELD_TYPES:
            raise DataError(f"{path}, line 1: field '{name}' has type "
                            f"'{kind}', expected one of "
                            f"{', '.join(FIELD_TYPES)}")
        if name in types:
            raise DataError(f"{path}, line 1: field '{name}' appears twice in "
                            f"the header")
        types[name] = kind
    return types


def _number(text: str, field: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: field '{field}' value {text[:40]!r} is not "
                        f"a number") from None


def parse_value(text: str, kind: str, field: str, where: str):
    r"""One field of a record as its type: :obj:`str`, a list of :obj:`str`,
    a :obj:`float` (NaN where empty) or a float64 array."""
    if kind == 'token':
        return text.strip()
    if kind == 'token_seq':
        return text.split()
    if kind == 'float':
        return _number(text, field, where) if text.strip() else float('nan')
    return np.array([_number(t, field, where) for t in text.split()],
                    dtype=np.float64)


def read_atomic(path: str, required: Sequence[str] = (),
                encoding: str = 'utf-8') -> AtomicFile:
    r"""Reads the atomic file at ``path``; a header without one of the
    ``required`` fields, a record with another number of fields than the
    header or a value that does not fit its type is one line of
    :class:`DataError` naming the file and line."""
    try:
        with open(path, encoding=f'{encoding}-sig' if encoding == 'utf-8'
                  else encoding, newline='') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from e
    records = text.splitlines()
    if not records or not records[0].strip():
        raise DataError(f"{path}: empty file, expected a header of "
                        f"'name:type' fields")
    types = parse_header(records[0], path)
    missing = [f for f in required if f not in types]
    if missing:
        raise DataError(f"{path}, line 1: header lacks field(s) {missing} "
                        f"(has {list(types)})")
    return parse_records(records[1:], types, path, start=2)


def parse_records(records: List[str], types: Dict[str, str], path: str,
                  start: int = 1, sep: str = '\t') -> AtomicFile:
    r"""The :class:`AtomicFile` of text records (lines from number
    ``start`` on) of ``sep``-separated fields of ``types``; blank lines are
    skipped."""
    columns: Dict[str, list] = {name: [] for name in types}
    lines: List[int] = []
    what = 'tab' if sep == '\t' else repr(sep)
    for number, record in enumerate(records, start=start):
        if not record.strip():
            continue
        where = f"{path}, line {number}"
        values = record.split(sep)
        if len(values) != len(types):
            raise DataError(f"{where}: expected {len(types)} {what}-separated "
                            f"fields, got {len(values)}")
        for (name, kind), value in zip(types.items(), values):
            columns[name].append(parse_value(value, kind, name, where))
        lines.append(number)
    return AtomicFile(path, types, columns, lines)


def sorted_tokens(tokens) -> List[str]:
    r"""Distinct tokens in id order: by number when every token is a decimal
    integer (``"2"`` before ``"10"``), else by string."""
    tokens = set(tokens)
    if all(_INTEGER.fullmatch(t) for t in tokens):
        return sorted(tokens, key=lambda t: (int(t), t))
    return sorted(tokens)


def tokens(file: AtomicFile, field: str) -> List[str]:
    r"""The values of a field read as one token each (whatever its declared
    type), where an empty value is an error naming the line."""
    kind = file.types[field]
    out = []
    for row, value in enumerate(file.columns[field]):
        if kind in ('token_seq', 'float_seq'):
            raise DataError(f"{file.path}, line 1: field '{field}' must be a "
                            f"token, not {kind}")
        if kind == 'token':
            text = value.strip()
        else:  # a float id: 3.0 is the token '3'
            text = '' if value != value else (
                str(int(value)) if value.is_integer() else repr(value))
        if not text:
            raise DataError(f"{file.where(row)}: empty '{field}'")
        out.append(text)
    return out


def numbers(file: AtomicFile, field: str) -> np.ndarray:
    r"""The finite values of a ``float`` (or ``token``) field as float64;
    an empty or non-finite one is an error naming the line."""
    out = np.empty(len(file), dtype=np.float64)
    kind = file.types[field]
    for row, value in enumerate(file.columns[field]):
        if kind == 'token':
            value = _number(value, field, file.where(row)) if value else \
                float('nan')
        elif kind != 'float':
            raise DataError(f"{file.path}, line 1: field '{field}' must be a "
                            f"float, not {kind}")
        if not np.isfinite(value):
            raise DataError(f"{file.where(row)}: field '{field}' is "
                            f"{'empty' if value != value else value}, "
                            f"expected a finite number")
        out[row] = value
    return out
