import numpy as np
import pytest

from pyg_mmssl.data import DataError
from pyg_mmssl.data.atomic import (numbers, parse_header, read_atomic,
                                   sorted_tokens, tokens)


def test_every_field_type(tmp_path):
    path = tmp_path / 'toy.item'
    path.write_text('item_id:token\ttags:token_seq\tprice:float\t'
                    'vec:float_seq\n'
                    'a\tx y\t1.5\t1 2 3\n'
                    '\n'  # blank lines are skipped
                    'b\t\t\t4 5 6\n')
    f = read_atomic(str(path), required=('item_id', ))
    assert f.types == {'item_id': 'token', 'tags': 'token_seq',
                       'price': 'float', 'vec': 'float_seq'}
    assert f.columns['item_id'] == ['a', 'b']
    assert f.columns['tags'] == [['x', 'y'], []]
    assert f.columns['price'][0] == 1.5 and np.isnan(f.columns['price'][1])
    assert f.columns['vec'][1].tolist() == [4.0, 5.0, 6.0]
    assert f.lines == [2, 4] and len(f) == 2


def test_header_without_types():
    assert parse_header('user_id\titem_id\trating\ttimestamp', 'f') == {
        'user_id': 'token', 'item_id': 'token', 'rating': 'float',
        'timestamp': 'float'}


@pytest.mark.parametrize('text, message', [
    ('', 'empty file'),
    ('item_id:token\tx:blob\n', "field 'x' has type 'blob'"),
    ('item_id:token\titem_id:float\n', "field 'item_id' appears twice"),
    ('name:token\n', "header lacks field(s) ['item_id']"),
    ('item_id:token\tv:float_seq\na\t1 2\nb\t1 x\n',
     "line 3: field 'v' value 'x' is not a number"),
    ('item_id:token\tp:float\na\t1\nb\t2\t3\n',
     'line 3: expected 2 tab-separated fields, got 3'),
])
def test_bad_files_are_one_line_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / 'toy.item'
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_atomic(str(path), required=('item_id', ))
    assert message in str(e.value) and str(path) in str(e.value)
    assert '\n' not in str(e.value)


def test_not_utf8(tmp_path):
    path = tmp_path / 'toy.inter'
    path.write_bytes(b'user_id\titem_id\n\xff\t1\n')
    with pytest.raises(DataError, match='not a UTF-8 text file'):
        read_atomic(str(path))


def test_tokens_and_numbers(tmp_path):
    path = tmp_path / 'toy.inter'
    path.write_text('user_id:float\trating\n3.0\t4\n4\t\n')
    f = read_atomic(str(path))
    assert tokens(f, 'user_id') == ['3', '4']
    with pytest.raises(DataError, match="line 3: field 'rating' is empty"):
        numbers(f, 'rating')


def test_sorted_tokens_are_numeric_when_all_are_integers():
    assert sorted_tokens(['10', '2', '1', '2']) == ['1', '2', '10']
    assert sorted_tokens(['b', '10', 'a', '2']) == ['10', '2', 'a', 'b']
