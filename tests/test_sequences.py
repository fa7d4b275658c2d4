"""Right-aligned user sequences: hand-written cases, a plain-Python reference, the training shift,
validation errors, and consistency with ``leave_one_out(order="time")``."""
import numpy as np
import pytest

from advrec.data import (PAD, Interactions, check_sequences, leave_one_out, training_sequences,
                         user_sequences)


def inter(users, items, n_users, n_items, ts=None):
    return Interactions(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), None,
                        None if ts is None else np.asarray(ts, dtype=np.int64), n_users, n_items,
                        np.arange(n_users), np.arange(n_items))


def reference_histories(parts, n_users):
    """Per user: the items of each part in (timestamp, input row) order, parts one after another."""
    out = [[] for _ in range(n_users)]
    for p in parts:
        for u in range(n_users):
            rows = [r for r in range(len(p)) if p.user[r] == u]
            if p.timestamp is not None:
                rows.sort(key=lambda r: (p.timestamp[r], r))
            out[u].extend(int(p.item[r]) for r in rows)
    return out


def reference_matrix(histories, max_len):
    out = np.full((len(histories), max_len), PAD, dtype=np.int64)
    for u, h in enumerate(histories):
        last = h[-max_len:]
        if last:
            out[u, max_len - len(last):] = last
    return out


def random_inter(rng, n_users, n_items, n, ts_range=5, with_ts=True):
    return inter(rng.integers(0, n_users, n), rng.integers(0, n_items, n), n_users, n_items,
                 rng.integers(0, ts_range, n) if with_ts else None)


# --- user_sequences on hand-written data ---------------------------------------------------------

def test_time_order_right_aligned_and_empty_user_all_pad():
    # user 0: items 5 (t=3), 2 (t=1), 7 (t=2) -> 2, 7, 5; user 1 has no rows; user 2: item 4
    x = inter([0, 0, 2, 0], [5, 2, 4, 7], 3, 8, ts=[3, 1, 9, 2])
    got = user_sequences(x, 4)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [[PAD, 2, 7, 5], [PAD] * 4, [PAD, PAD, PAD, 4]])


def test_equal_timestamps_keep_input_order():
    # all of user 0's rows share t=1 except the last input row (t=0, so it comes first)
    x = inter([0, 0, 0, 0], [3, 1, 2, 0], 1, 4, ts=[1, 1, 1, 0])
    np.testing.assert_array_equal(user_sequences(x, 4), [[0, 3, 1, 2]])


def test_no_timestamps_keep_input_order():
    x = inter([1, 0, 1, 1], [3, 1, 0, 2], 2, 4)
    np.testing.assert_array_equal(user_sequences(x, 3), [[PAD, PAD, 1], [3, 0, 2]])


def test_truncation_keeps_the_last_max_len_items():
    x = inter([0] * 6, [0, 1, 2, 3, 4, 5], 1, 6, ts=[0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(user_sequences(x, 3), [[3, 4, 5]])
    np.testing.assert_array_equal(user_sequences(x, 1), [[5]])
    np.testing.assert_array_equal(user_sequences(x, 8), [[PAD, PAD, 0, 1, 2, 3, 4, 5]])


def test_duplicate_items_are_kept():
    x = inter([0, 0, 0], [2, 2, 1], 1, 3, ts=[0, 1, 2])
    np.testing.assert_array_equal(user_sequences(x, 4), [[PAD, 2, 2, 1]])


def test_extra_is_appended_after_train_even_if_older():
    train = inter([0, 0, 1], [1, 2, 3], 2, 6, ts=[5, 6, 7])
    valid = inter([0, 1], [4, 5], 2, 6, ts=[0, 1])  # earlier timestamps, still appended
    np.testing.assert_array_equal(user_sequences(train, 4, valid), [[PAD, 1, 2, 4], [PAD, PAD, 3, 5]])
    np.testing.assert_array_equal(user_sequences(train, 2, valid), [[2, 4], [3, 5]])


def test_extra_only_user_and_empty_inputs():
    train = inter([0], [1], 3, 4, ts=[0])
    valid = inter([2], [3], 3, 4, ts=[0])
    np.testing.assert_array_equal(user_sequences(train, 2, valid), [[PAD, 1], [PAD, PAD], [PAD, 3]])
    empty = inter([], [], 3, 4, ts=[])
    np.testing.assert_array_equal(user_sequences(empty, 2), np.full((3, 2), PAD))
    assert user_sequences(inter([], [], 0, 4), 3).shape == (0, 3)


def test_extra_in_another_id_space_and_bad_max_len():
    train = inter([0], [1], 2, 4)
    with pytest.raises(ValueError, match="extra"):
        user_sequences(train, 3, inter([0], [1], 2, 5))
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="max_len"):
            user_sequences(train, bad)
        with pytest.raises(ValueError, match="max_len"):
            training_sequences(train, bad)


@pytest.mark.parametrize("seed", range(6))
def test_matches_plain_python_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 8)), int(rng.integers(1, 10))
    with_ts = seed % 3 != 0
    train = random_inter(rng, n_users, n_items, int(rng.integers(0, 40)), with_ts=with_ts)
    extra = random_inter(rng, n_users, n_items, int(rng.integers(0, 10)), with_ts=with_ts)
    for max_len in (1, 3, 50):
        np.testing.assert_array_equal(
            user_sequences(train, max_len), reference_matrix(reference_histories([train], n_users), max_len))
        np.testing.assert_array_equal(
            user_sequences(train, max_len, extra),
            reference_matrix(reference_histories([train, extra], n_users), max_len))


# --- training_sequences --------------------------------------------------------------------------

def test_training_sequences_shift_by_hand():
    x = inter([0, 0, 0, 1, 2, 2], [3, 4, 5, 7, 1, 1], 4, 8, ts=[1, 2, 3, 1, 0, 1])
    s = training_sequences(x, 4)
    # user 0: 3 -> 4 -> 5; user 1: one item, nothing to predict; user 2: 1 -> 1; user 3: empty
    np.testing.assert_array_equal(s.inputs, [[PAD, PAD, 3, 4], [PAD] * 4, [PAD, PAD, PAD, 1], [PAD] * 4])
    np.testing.assert_array_equal(s.targets, [[PAD, PAD, 4, 5], [PAD] * 4, [PAD, PAD, PAD, 1], [PAD] * 4])
    assert s.n_positions == 3


def test_training_sequences_no_user_with_two_items_has_no_position():
    s = training_sequences(inter([0, 1, 2], [0, 1, 2], 3, 3, ts=[0, 0, 0]), 5)
    assert s.n_positions == 0
    assert (s.inputs == PAD).all() and (s.targets == PAD).all()


def test_training_sequences_truncation_keeps_last_max_len_steps():
    x = inter([0] * 6, [0, 1, 2, 3, 4, 5], 1, 6, ts=range(6))
    s = training_sequences(x, 3)
    np.testing.assert_array_equal(s.inputs, [[2, 3, 4]])
    np.testing.assert_array_equal(s.targets, [[3, 4, 5]])


@pytest.mark.parametrize("seed", range(5))
def test_training_sequences_inputs_are_the_items_before_the_targets(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 6, 9
    train = random_inter(rng, n_users, n_items, 50)
    hist = reference_histories([train], n_users)
    for max_len in (1, 4, 30):
        s = training_sequences(train, max_len)
        assert s.inputs.shape == s.targets.shape == (n_users, max_len)
        np.testing.assert_array_equal(s.inputs == PAD, s.targets == PAD)
        for u, h in enumerate(hist):
            steps = list(zip(h[:-1], h[1:]))[-max_len:]  # (item, next item): the first item is no target
            want_in = reference_matrix([[a for a, _ in steps]], max_len)[0]
            want_tg = reference_matrix([[b for _, b in steps]], max_len)[0]
            np.testing.assert_array_equal(s.inputs[u], want_in)
            np.testing.assert_array_equal(s.targets[u], want_tg)
        assert s.n_positions == sum(min(max(len(h) - 1, 0), max_len) for h in hist)
        check_sequences(s.inputs, "inputs", n_items)
        check_sequences(s.targets, "targets", n_items)


# --- check_sequences -----------------------------------------------------------------------------

def test_check_sequences_accepts_and_converts():
    got = check_sequences(np.array([[PAD, 1], [0, 2]], dtype=np.int32), n_items=3)
    assert got.dtype == np.int64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, [[PAD, 1], [0, 2]])
    assert check_sequences(np.zeros((0, 3), dtype=np.int64)).shape == (0, 3)
    np.testing.assert_array_equal(check_sequences([[PAD, PAD]]), [[PAD, PAD]])


def test_check_sequences_errors_name_the_argument():
    with pytest.raises(ValueError, match="hist must be a 2-D"):
        check_sequences(np.zeros((2, 2, 2), dtype=np.int64), "hist")
    with pytest.raises(ValueError, match="hist must be a 2-D"):
        check_sequences(np.zeros(3, dtype=np.int64), "hist")
    with pytest.raises(ValueError, match="hist must hold integer"):
        check_sequences(np.zeros((2, 2)), "hist")
    with pytest.raises(ValueError, match="hist must hold integer"):
        check_sequences(np.zeros((2, 2), dtype=bool), "hist")
    with pytest.raises(ValueError, match="hist holds -2"):
        check_sequences(np.array([[PAD, -2]]), "hist")
    with pytest.raises(ValueError, match="row 2 has padding after an item"):
        check_sequences(np.array([[PAD, 1], [0, 1], [1, PAD], [0, PAD]]), "hist")
    with pytest.raises(ValueError, match="row 0 has padding after an item"):
        check_sequences(np.array([[1, PAD, 2]]), "hist")
    with pytest.raises(IndexError, match="hist holds item 3.*n_items=3"):
        check_sequences(np.array([[PAD, 3]]), "hist", n_items=3)
    check_sequences(np.array([[PAD, 3]]), "hist")  # without n_items there is no upper bound


# --- consistency with leave_one_out(order="time") -------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_train_sequence_then_valid_then_test_is_the_full_history(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 15
    x = random_inter(rng, n_users, n_items, 120, ts_range=6)  # many equal timestamps
    split = leave_one_out(x, order="time")
    full = reference_histories([x], n_users)
    seqs = user_sequences(split.train, 500)
    with_valid = user_sequences(split.train, 500, split.valid)
    test_items = {int(u): int(i) for u, i in zip(split.test.user, split.test.item)}
    valid_items = {int(u): int(i) for u, i in zip(split.valid.user, split.valid.item)}
    checked = 0
    for u in range(n_users):
        train_part = [int(i) for i in seqs[u] if i != PAD]
        if u in test_items:
            assert train_part + [valid_items[u], test_items[u]] == full[u]
            assert [int(i) for i in with_valid[u] if i != PAD] == full[u][:-1]
            checked += 1
        else:
            assert train_part == full[u]
    assert checked > 5
