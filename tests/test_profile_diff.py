"""Two per-operator profiles op by op (harness.profile.diff): matching across inserted, removed and
reshaped ops, the explanation of a change, and units. Hand-written contract documents (the wire form
every device returns, through `from_dict`), so every expected number is known exactly."""

from __future__ import annotations

import pytest

from harness.errors import ModelError
from harness.profile.diff import CHANGED, NEW, PER_TYPE, REMOVED, SAME, diff, explain
from harness.profile.document import from_dict

N = 3  # profiled invocations


def op(index, type_, t, inputs=(), outputs=(), **kw) -> dict:
    """One op of a contract document; `t` a time, or a list of N times."""
    times = t if isinstance(t, list) else [t] * N
    return {"index": index, "type": type_, "times": times, "inputs": list(inputs), "outputs": list(outputs), **kw}


def profile(ops, unit="us", **kw):
    return from_dict({"source": "litert-builtin", "unit": unit, "invocations": N, "ops": ops, **kw})


X, H, Y = [1, 64], [1, 256], [1, 4]
CONV = op(0, "CONV_2D", 10.0, [[1, 8, 8, 1], [4, 3, 3, 1]], [[1, 6, 6, 4]])
RESHAPE = op(1, "RESHAPE", 0.2, [[1, 6, 6, 4]], [X])


def test_the_same_graph_is_matched_op_by_op_and_the_slower_op_explains_the_change():
    ref = profile([CONV, RESHAPE, op(2, "FULLY_CONNECTED", 1.0, [X], [Y])])
    cand = profile([{**CONV, "times": [12.0, 12.1, 11.9]}, RESHAPE, op(2, "FULLY_CONNECTED", 1.1, [X], [Y])])
    d = diff(ref, cand)
    assert d.matching == "same graph" and [o.status for o in d.ops] == [SAME] * 3
    assert d.change == pytest.approx(2.1) and [round(o.delta, 6) for o in d.ops] == [2.0, 0.0, 0.1]
    assert d.ops[0].ref == 10.0 and d.ops[0].cand == 12.0 and d.ops[0].share == pytest.approx(2.0 / 2.1)
    e = explain(ref, cand)
    assert [o.index for o in e.ops] == [0] and e.text == "+2.1 us: CONV_2D #0 +2.0 us (95 %)"


def test_an_inserted_op_is_a_new_op_and_the_ops_after_it_stay_matched():
    """One Dense layer inserted in the middle: every later index shifts by one, yet the later ops are
    matched to their old selves (by type and shapes) and the new FULLY_CONNECTED carries the change."""
    ref = profile([CONV, RESHAPE, op(2, "FULLY_CONNECTED", 1.0, [X], [Y]), op(3, "SOFTMAX", 0.5, [Y], [Y])])
    cand = profile(
        [
            CONV,
            RESHAPE,
            op(2, "FULLY_CONNECTED", 3.9, [X], [X]),  # the inserted layer
            op(3, "FULLY_CONNECTED", 1.2, [X], [Y]),
            op(4, "SOFTMAX", 0.5, [Y], [Y]),
        ]
    )
    d = diff(ref, cand)
    assert d.matching == "aligned"
    assert [(o.type, o.index, o.status) for o in d.ops] == [
        ("CONV_2D", 0, SAME),
        ("RESHAPE", 1, SAME),
        ("FULLY_CONNECTED", 2, NEW),
        ("FULLY_CONNECTED", 3, SAME),  # the reference's #2, now #3
        ("SOFTMAX", 4, SAME),
    ]
    assert d.new_ops[0].ref is None and d.new_ops[0].cand == 3.9 and not d.removed_ops
    e = explain(ref, cand)
    assert e.text == "+4.1 us: FULLY_CONNECTED #2 (new op) +3.9 us (95 %)"
    assert e.covered == pytest.approx(3.9 / 4.1)


def test_a_removed_op_and_a_stretch_that_cannot_be_paired():
    """An op dropped: `removed`. A stretch replaced by a different number of ops: which old op became
    which new one would be a guess, so the old ones are removed and the new ones new."""
    ref = profile([CONV, op(1, "RELU", 0.3, [[1, 6, 6, 4]], [[1, 6, 6, 4]]), RESHAPE])
    cand = profile([CONV, {**RESHAPE, "index": 1}])
    d = diff(ref, cand)
    assert [(o.type, o.status) for o in d.ops] == [("CONV_2D", SAME), ("RELU", REMOVED), ("RESHAPE", SAME)]
    assert d.removed_ops[0].index == 1 and d.removed_ops[0].cand is None
    assert explain(cand, ref).text == "+0.30 us: RELU #1 (new op) +0.30 us (100 %)"
    one = profile([CONV, op(1, "FULLY_CONNECTED", 1.0, [X], [Y])])
    two = profile([CONV, op(1, "FULLY_CONNECTED", 8.0, [X], [H]), op(2, "FULLY_CONNECTED", 1.0, [H], [Y])])
    assert [o.status for o in diff(one, two).ops] == [SAME, REMOVED, NEW, NEW]
    assert explain(one, two).text == "+8.0 us: FULLY_CONNECTED #1 (new op) +8.0 us (100 %)"


def test_a_narrowed_layer_keeps_its_ops_matched_as_changed():
    wide = profile(
        [op(0, "CONV_2D", 20.0, [[1, 8, 8, 1]], [[1, 6, 6, 16]]), op(1, "MEAN", 1.0, [[1, 6, 6, 16]], [[1, 16]])]
    )
    narrow = profile(
        [op(0, "CONV_2D", 5.0, [[1, 8, 8, 1]], [[1, 6, 6, 4]]), op(1, "MEAN", 0.5, [[1, 6, 6, 4]], [[1, 4]])]
    )
    d = diff(wide, narrow)
    assert [o.status for o in d.ops] == [CHANGED, CHANGED] and d.change == -15.5
    assert explain(wide, narrow).text == "-15.5 us: CONV_2D #0 (shapes changed) -15.0 us (97 %)"


def test_nothing_aligns_falls_back_to_per_type_totals():
    """A graph of delegate nodes against the plain one: no op matches, per-type totals still say
    where the time went."""
    plain = profile([CONV, RESHAPE, op(2, "CONV_2D", 5.0)])
    delegated = profile([op(0, "TfLiteXNNPackDelegate", 6.0, delegated=True), op(1, "RESHAPE", 0.2, [[9]], [[9]])])
    d = diff(plain, delegated)
    assert d.matching == "per type"
    totals = {o.type: (o.ref, o.cand, o.status) for o in d.ops}
    assert totals == {
        "CONV_2D": (15.0, None, PER_TYPE),
        "RESHAPE": (0.2, 0.2, PER_TYPE),
        "TfLiteXNNPackDelegate": (None, 6.0, PER_TYPE),
    }
    assert explain(plain, delegated).text == "-9.0 us: CONV_2D (removed type) -15.0 us (167 %)"


def test_the_explanation_is_the_fewest_ops_with_the_change_and_never_one_against_it():
    ops = [op(i, "ADD", 1.0, [[i]], [[i]]) for i in range(8)]
    ref = profile(ops)
    # deltas +5, +3, +1, +1, -1 (against the change), +0.5, 0, 0: total +9.5
    cand = profile([{**o, "times": [t] * N} for o, t in zip(ops, [6.0, 4.0, 2.0, 2.0, 0.0, 1.5, 1.0, 1.0])])
    d = diff(ref, cand)
    assert d.change == pytest.approx(9.5)
    e = explain(ref, cand)  # 5 + 3 = 8 >= 0.8 * 9.5
    assert [o.index for o in e.ops] == [0, 1] and e.text == "+9.5 us: ADD #0 +5.0 us (53 %), ADD #1 +3.0 us (32 %)"
    full = explain(ref, cand, min_share=1.0)  # 5 + 3 + 1 + 1 = 10 >= 9.5; the -1 is never named
    assert [o.index for o in full.ops] == [0, 1, 2, 3]
    assert explain(ref, ref).text == "+0.00 us: no operator's time changed" and not explain(ref, ref).ops
    with pytest.raises(ValueError, match="min_share"):
        explain(ref, cand, min_share=0)
    # a change spread over many ops: the first few are named, the rest summed up
    spread = explain(profile(ops[:6]), profile([{**o, "times": [2.0] * N} for o in ops[:6]]))
    assert len(spread.ops) == 5 and spread.text.endswith("ADD #3 +1.0 us (17 %), 1 more ops +1.0 us")


def test_each_op_is_its_median_so_one_preempted_invocation_does_not_move_it():
    ref = profile([op(0, "CONV_2D", [10.0, 10.0, 10.0])])
    cand = profile([op(0, "CONV_2D", [10.0, 500.0, 10.0])])
    assert diff(ref, cand).change == 0.0


def test_units_ticks_are_converted_at_a_known_rate_and_never_subtracted_from_microseconds():
    ref = profile([op(0, "CONV_2D", 10.0)])
    at_rate = profile([op(0, "CONV_2D", 4800.0)], unit="ticks", ticks_per_us=400.0, cycles=True)
    d = diff(ref, at_rate)
    assert d.unit == "us" and d.change == pytest.approx(2.0)
    unknown = profile([op(0, "CONV_2D", 4800.0)], unit="ticks", cycles=True)
    with pytest.raises(ModelError, match=r"in us with one in ticks: the candidate counts ticks at an unknown rate"):
        diff(ref, unknown)
    with pytest.raises(ModelError, match="the reference counts ticks"):
        diff(unknown, ref)
    # one board's cycle counter against itself: comparable in its own unit
    faster = profile([op(0, "CONV_2D", 4000.0)], unit="ticks", cycles=True)
    assert explain(unknown, faster).text == "-800 ticks: CONV_2D #0 -800 ticks (100 %)"
    other_clock = profile([op(0, "CONV_2D", 40.0)], unit="ticks", cycles=False)
    with pytest.raises(ModelError, match="cycles"):
        diff(unknown, other_clock)
