import numpy as np
import pytest

from pyg_mmssl.data.split import split_key, split_per_user, split_sizes


def test_split_sizes():
    assert split_sizes(1) == (1, 0, 0) and split_sizes(2) == (2, 0, 0)
    assert split_sizes(3) == (1, 1, 1)
    assert split_sizes(10) == (8, 1, 1)
    assert split_sizes(25) == (21, 2, 2)
    assert split_sizes(10, (0.8, 0.2, 0.0)) == (8, 2, 0)


def pairs(n_users=6, per_user=12):
    user = np.repeat(np.arange(n_users), per_user)
    item = np.tile(np.arange(per_user), n_users)
    return user, item


def as_set(e):
    return set(map(tuple, e.T.tolist()))


def test_random_split_is_seeded_per_user_and_partitions():
    user, item = pairs()
    a = split_per_user(user, item, seed=0)
    assert sum(e.shape[1] for e in a.values()) == user.size
    assert a['train'].shape[1] == 6 * 10 and a['test'].shape[1] == 6
    assert not (as_set(a['train']) & as_set(a['test']))
    # The input order does not matter; the seed does.
    perm = np.random.default_rng(5).permutation(user.size)
    b = split_per_user(user[perm], item[perm], seed=0)
    assert all(as_set(a[s]) == as_set(b[s]) for s in a)
    c = split_per_user(user, item, seed=1)
    assert as_set(a['test']) != as_set(c['test'])
    # One user's split does not depend on the others.
    keep = user != 0
    d = split_per_user(user[keep], item[keep], seed=0)
    assert as_set(d['test']) == {p for p in as_set(a['test']) if p[0] != 0}


def test_temporal_split_orders_by_time():
    user = np.array([0, 0, 0, 0, 0, 1, 1])
    item = np.array([4, 3, 2, 1, 0, 5, 6])
    time = np.array([50, 10, 40, 20, 30, 1, 2])
    s = split_per_user(user, item, time, split='temporal')
    # user 0 by time: 3, 1, 0, 2, 4 -> train 3 1 0, val 2, test 4
    assert s['train'].T.tolist() == [[0, 3], [0, 1], [0, 0], [1, 5], [1, 6]]
    assert s['val'].T.tolist() == [[0, 2]]
    assert s['test'].T.tolist() == [[0, 4]]
    with pytest.raises(ValueError, match='needs a timestamp'):
        split_per_user(user, item, split='temporal')


def test_bad_options():
    user, item = pairs()
    with pytest.raises(ValueError, match="unknown split 'time'"):
        split_per_user(user, item, split='time')
    with pytest.raises(ValueError, match='sum to 1'):
        split_per_user(user, item, ratios=(0.8, 0.1, 0.2))


def test_split_key_names_the_options():
    assert split_key('ml', 'random', 3, None) == 'ml.random-80-10-10.seed3'
    assert split_key('ml', 'temporal', 3, 4.0) == 'ml.temporal-80-10-10.min4'
