"""Row lookup by id (sim.core.lookup) against pandas' drop_duplicates/set_index lookup."""
import numpy as np
import pandas as pd
import pytest

from sim.core.errors import InputError
from sim.core.lookup import BINCOUNT_MAX, id_positions, key_counts, rows_by_id, values_at


def reference_positions(keys, ids):
    """Slow and obvious: the first row holding each id, -1 when none."""
    first = {}
    for i, k in enumerate(keys.tolist()):
        first.setdefault(k, i)
    return np.array([first.get(v, -1) for v in ids.tolist()], dtype=np.int64)


@pytest.mark.parametrize("n_ids", [500, 6000])  # few ids are searched as given, many in sorted order
@pytest.mark.parametrize("order", ["increasing", "shuffled", "repeated", "decreasing"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_id_positions_are_the_first_rows_of_each_id(order, dtype, n_ids):
    rng = np.random.default_rng(7)
    keys = np.sort(rng.choice(1000, size=300, replace=False)).astype(dtype)
    if order == "shuffled":
        keys = rng.permutation(keys)
    elif order == "repeated":
        keys = rng.choice(keys[:50], size=300)
    elif order == "decreasing":
        keys = keys[::-1].copy()
    ids = rng.integers(-5, 1005, size=n_ids)  # present and absent ids, beyond both ends
    got = id_positions(keys, ids)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, reference_positions(keys, ids))
    assert np.any(got >= 0) and np.any(got < 0)


def test_id_positions_of_empty_inputs():
    assert id_positions(np.zeros(0, np.int64), np.array([1, 2])).tolist() == [-1, -1]
    assert id_positions(np.array([3, 1]), np.zeros(0, np.int64)).tolist() == []


def test_id_positions_refuse_ids_that_are_not_integers():
    with pytest.raises(InputError, match="integer ids"):
        id_positions(np.array([1.5, 2.0]), np.array([1]))
    with pytest.raises(InputError, match="integer ids"):
        id_positions(np.array([1, 2]), np.array([["a"]]))


def test_rows_by_id_equal_a_set_index_lookup():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"person_id": rng.permutation(200).astype(np.int32),
                          "x": rng.normal(size=200),
                          "kind": pd.Categorical(rng.choice(["day", "night", "none"], size=200))})
    ids = rng.integers(0, 200, size=60)
    got = rows_by_id(frame, "person_id", ids, ["x", "kind"], what="persons table")
    want = frame.set_index("person_id").loc[ids, ["x", "kind"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    with pytest.raises(InputError, match="persons table.*e.g. 500"):
        rows_by_id(frame, "person_id", np.array([1, 500]), ["x"], what="persons table")


@pytest.mark.parametrize("top", [50, BINCOUNT_MAX + 5])
def test_key_counts_equal_a_count_of_each_query(top):
    """Both ways of counting (a bincount over a small key range, a sort over a large
    one) give, for every query, the number of equal keys (0 for keys never seen)."""
    rng = np.random.default_rng(top % 7)
    keys = rng.integers(0, 50, 400)
    if top > 50:
        keys[::9] = top - 1  # a key beyond the bincount's range
    queries = np.concatenate([rng.integers(0, 60, 100), [top - 1, 0]])
    want = np.array([(keys == q).sum() for q in queries])
    got = key_counts(keys.copy(), queries)
    np.testing.assert_array_equal(got, want)
    assert (want == 0).any() and (want > 1).any()
    assert key_counts(np.zeros(0, np.int64), queries).tolist() == [0] * len(queries)


def test_values_at_fill_where_an_id_was_not_found():
    vals = np.array([10.0, 11.0, 12.0])
    pos = id_positions(np.array([7, 3, 5]), np.array([5, 4, 7]))
    np.testing.assert_array_equal(values_at(vals, pos, np.nan), [12.0, np.nan, 10.0])
    assert values_at(np.zeros(0), np.array([-1, -1]), -1).tolist() == [-1, -1]
