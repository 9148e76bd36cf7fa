"""Box, pair and trajectory ops: C++ and PyTorch paths against the NumPy references, hand-made cases, bad input."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.common import DEVICES
from uasan import _ext, ops

IMPLS = ["cpp", "torch", "ref"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------------------------
# strategies: boxes with degenerate (zero width/height), duplicated and touching members, small integer grids so
# that ties and exact overlaps are common
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def box_arrays(draw, n=None, dtype=np.float64):
    n = draw(st.integers(0, 7)) if n is None else n
    xy = draw(arrays(np.int64, (n, 2), elements=st.integers(-5, 20)))
    wh = draw(arrays(np.int64, (n, 2), elements=st.integers(0, 12)))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(dtype)
    if n >= 2 and draw(st.booleans()):
        boxes[-1] = boxes[0]  # an identical box
    if draw(st.booleans()):
        boxes = boxes + draw(st.floats(0, 1, allow_nan=False)) * 0.5  # non-integer coordinates
    return boxes


@st.composite
def pair_inputs(draw):
    n = draw(st.integers(0, 6))
    t = draw(st.integers(0, 7))
    boxes = draw(box_arrays(n * t, dtype=draw(st.sampled_from([np.float32, np.float64])))).reshape(n, t, 4)
    valid = draw(arrays(np.bool_, (n, t)))
    if n:
        pairs = draw(arrays(np.int64, (draw(st.integers(0, 12)), 2), elements=st.integers(0, n - 1)))
    else:
        pairs = np.zeros((0, 2), dtype=np.int64)
    return boxes, valid, pairs


@st.composite
def trajectories(draw, max_count=6):
    count = draw(st.integers(0, max_count))
    out = []
    for _ in range(count):
        start = draw(st.integers(0, 12))
        length = draw(st.integers(0, 9))
        out.append((start, draw(box_arrays(length))))
    return out


def assert_close(a, b, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------------------------
# box_iou / box_giou
# ---------------------------------------------------------------------------------------------------------------


def test_extension_loaded():
    assert _ext.HAS_EXT, f"C++ extension missing: {_ext.EXT_ERROR}"


@pytest.mark.parametrize("op", ["box_iou", "box_giou"])
@SETTINGS
@given(a=box_arrays(), b=box_arrays(), plus_one=st.booleans())
def test_box_pair_ops_match_reference(op, a, b, plus_one):
    ref = getattr(ops, op)(a, b, plus_one=plus_one, impl="ref")
    assert ref.shape == (len(a), len(b))
    assert np.isfinite(ref).all()
    for impl in ("cpp", "torch"):
        assert_close(getattr(ops, op)(a, b, plus_one=plus_one, impl=impl), ref, rtol=1e-12, atol=1e-12)


def test_box_iou_by_hand():
    a = np.array([[0, 0, 9, 9], [0, 0, 0, 0]], dtype=np.float64)
    b = np.array([[5, 5, 14, 14], [20, 20, 29, 29]], dtype=np.float64)
    for impl in IMPLS:
        iou = ops.box_iou(a, b, impl=impl)  # inclusive: 10x10 boxes sharing a 5x5 corner
        assert_close(iou, [[25 / 175, 0], [0, 0]])
        iou = ops.box_iou(a, b, plus_one=False, impl=impl)  # continuous: 9x9 boxes sharing 4x4; empty box → 0
        assert_close(iou, [[16 / (81 + 81 - 16), 0], [0, 0]])
        giou = ops.box_giou(a[:1], b[1:], impl=impl)  # disjoint: 0 − (30·30 − 200) / (30·30)
        assert_close(giou, [[-(900 - 200) / 900]])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["auto", *IMPLS])
def test_box_iou_kinds_dtypes_and_layouts(impl, device, rng):
    a = rng.uniform(0, 50, (9, 8)).astype(np.float32)
    a = np.concatenate([a[:, :2], a[:, :2] + 5], axis=1)
    strided = np.asfortranarray(a)[::2]  # non-contiguous
    out = ops.box_iou(strided, a, impl=impl)
    assert out.dtype == np.float32 and out.shape == (5, 9)
    assert_close(out, ops.box_iou(np.ascontiguousarray(strided).astype(np.float64), a.astype(np.float64), impl="ref"))
    ta = torch.from_numpy(a).to(device)
    if device != "cpu" and impl in ("cpp", "ref"):  # host-only paths refuse device tensors, naming the argument
        with pytest.raises(ValueError, match=f"box_iou: expected a on the CPU, but got a tensor on {device}"):
            ops.box_iou(ta, ta, impl=impl)
        return
    # on a GPU, "auto" takes the PyTorch path and the result stays on the inputs' device
    t = ops.box_iou(ta, ta, impl=impl)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device == ta.device
    assert_close(t.cpu().numpy(), ops.box_iou(a, a, impl="ref"))
    t = ops.box_giou(ta[::2], ta, impl=impl)  # a strided view
    assert t.shape == (5, 9) and t.device == ta.device
    assert_close(t.cpu().numpy(), ops.box_giou(a[::2].copy(), a, impl="ref"))
    t = ops.box_iou(ta.long(), ta.long(), impl=impl)
    assert t.dtype == torch.float64 and t.device == ta.device
    assert_close(t.cpu().numpy(), ops.box_iou(a.astype(np.int64), a.astype(np.int64), impl="ref"))
    ints = ops.box_iou(a.astype(np.int64), a.astype(np.int64), impl=impl)
    assert ints.dtype == np.float64
    assert ops.box_iou(np.zeros((0, 4)), a, impl=impl).shape == (0, 9)
    assert ops.box_iou(ta[:0], ta, impl=impl).shape == (0, 9)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("a", "match"),
    [
        (np.zeros((3,)), r"box_iou: expected a of shape \(N, 4\), but got \(3,\)"),
        (np.zeros((2, 5)), r"expected a of shape \(N, 4\)"),
        (np.array([[0, 0, np.nan, 1.0]]), "finite coordinates"),
        (np.array([[0, 0, np.inf, 1.0]]), "finite coordinates"),
        (np.array([[5, 0, 1, 1.0]]), r"x2 >= x1 and y2 >= y1, but box 0"),
        (np.array([["a", "b", "c", "d"]]), "real numbers"),
    ],
)
def test_box_iou_bad_input(impl, a, match):
    with pytest.raises(ValueError, match=match):
        ops.box_iou(a, np.zeros((1, 4)), impl=impl)


def test_bad_impl_is_named():
    with pytest.raises(ValueError, match="impl"):
        ops.box_iou(np.zeros((1, 4)), np.zeros((1, 4)), impl="cuda")


def test_cpp_checks_its_own_input():
    """The extension is importable on its own, so it must refuse bad input without the Python checks."""
    from uasan import _C

    with pytest.raises(ValueError, match=r"box_iou: expected b of shape \(M, 4\)"):
        _C.box_iou(np.zeros((1, 4)), np.zeros((1, 3)), True)
    with pytest.raises(ValueError, match="finite"):
        _C.box_giou(np.array([[0, 0, np.nan, 1]]), np.zeros((1, 4)), True)
    with pytest.raises(ValueError, match="pairs to index"):
        _C.pair_union_boxes(np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.array([[0, 2]]))
    with pytest.raises(ValueError, match="offsets"):
        _C.viou_matrix(
            np.zeros((2, 4)),
            np.zeros(1, np.int64),
            np.array([0, 1]),
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            np.zeros(1, np.int64),
            True,
        )


# ---------------------------------------------------------------------------------------------------------------
# pair ops
# ---------------------------------------------------------------------------------------------------------------


@SETTINGS
@given(inputs=pair_inputs())
def test_pair_ops_match_reference(inputs):
    boxes, valid, pairs = inputs
    u_ref, v_ref = ops.pair_union_boxes(boxes, valid, pairs, impl="ref")
    m_ref = ops.pair_motion_features(boxes, valid, pairs, impl="ref")
    g_ref = ops.pair_giou_start_end(boxes, valid, pairs, impl="ref")
    assert u_ref.shape == (len(pairs), boxes.shape[1], 4) and m_ref.shape == (len(pairs), 12)
    assert np.isfinite(m_ref).all() and np.isfinite(g_ref).all()
    assert ((g_ref >= 0) & (g_ref <= 2)).all()
    tol = 1e-5 if boxes.dtype == np.float32 else 1e-12
    for impl in ("cpp", "torch"):
        u, v = ops.pair_union_boxes(boxes, valid, pairs, impl=impl)
        np.testing.assert_array_equal(u, u_ref)
        np.testing.assert_array_equal(v, v_ref)
        m = ops.pair_motion_features(boxes, valid, pairs, impl=impl)
        assert m.dtype == boxes.dtype
        assert_close(m, m_ref, rtol=tol, atol=tol)
        assert_close(ops.pair_giou_start_end(boxes, valid, pairs, impl=impl), g_ref, rtol=tol, atol=tol)


def test_pair_motion_features_by_hand():
    # subject: frames 1..3, 10x20 box moving right by 10 px a frame; object: frames 0..4, fixed 20x10 box
    boxes = np.zeros((2, 5, 4))
    valid = np.zeros((2, 5), bool)
    for f in (1, 2, 3):
        boxes[0, f] = [10 * f, 0, 10 * f + 10, 20]
    valid[0, 1:4] = True
    boxes[1, :] = [0, 0, 20, 10]
    valid[1, :] = True
    pairs = np.array([[0, 1], [1, 0]])
    first = ((15 - 10) / 20, (10 - 5) / 10, np.log(10 / 20), np.log(20 / 10), 0.0, (1 - 0) / 30)
    last = ((35 - 10) / 20, (10 - 5) / 10, np.log(10 / 20), np.log(20 / 10), 0.0, (4 - 5) / 30)
    expected = np.array([v for pair in zip(first, last, strict=True) for v in pair])
    for impl in IMPLS:
        m = ops.pair_motion_features(boxes, valid, pairs, impl=impl)
        assert_close(m[0], expected, rtol=1e-12, atol=1e-12)
        assert_close(m[1, [10, 11]], [-1 / 30, 1 / 30])
        # first boxes [10,0,20,20] vs [0,0,20,10]: inter 100, union 300, hull 400 → GIoU = 1/3 − 1/4
        g = ops.pair_giou_start_end(boxes, valid, pairs, impl=impl)
        assert_close(g[0, 0], 1 / 3 - 1 / 4 + 1)
        u, uv = ops.pair_union_boxes(boxes, valid, pairs, impl=impl)
        assert uv[0].tolist() == [False, True, True, True, False]
        assert_close(u[0, 2], [0, 0, 30, 20])
        assert_close(u[0, 0], [0, 0, 0, 0])


@pytest.mark.parametrize("impl", IMPLS)
def test_pair_ops_degenerate_and_missing(impl):
    boxes = np.zeros((3, 2, 4), np.float32)  # all-zero boxes: widths and heights floored at min_size
    valid = np.array([[True, True], [True, False], [False, False]])
    pairs = np.array([[0, 1], [0, 2], [2, 2]])
    m = ops.pair_motion_features(boxes, valid, pairs, impl=impl)
    assert np.isfinite(m).all()
    np.testing.assert_array_equal(m[1:], 0)  # a member that never exists → documented zero row
    g = ops.pair_giou_start_end(boxes, valid, pairs, impl=impl)
    np.testing.assert_array_equal(g[1:], 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["auto", *IMPLS])
def test_pair_ops_tensors_and_layouts(impl, device, rng):
    n, t = 5, 7
    xy = rng.uniform(0, 100, (n, t, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (n, t, 2))], -1).astype(np.float32)
    valid = rng.random((n, t)) > 0.2
    pairs = np.array([(s, o) for s in range(n) for o in range(n) if s != o])
    tb = torch.from_numpy(boxes).to(device).transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous view
    tv, tp = torch.from_numpy(valid).to(device), torch.from_numpy(pairs).to(device)
    if device != "cpu" and impl in ("cpp", "ref"):  # host-only paths refuse device tensors, naming the argument
        for op in (ops.pair_union_boxes, ops.pair_motion_features, ops.pair_giou_start_end):
            with pytest.raises(ValueError, match=f"expected boxes on the CPU, but got a tensor on {device}"):
                op(tb, tv, tp, impl=impl)
        return
    # on a GPU, "auto" takes the PyTorch path and the results stay on the inputs' device
    out = ops.pair_motion_features(tb, tv, tp, impl=impl)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == tb.device
    assert_close(out.cpu().numpy(), ops.pair_motion_features(boxes, valid, pairs, impl="ref"), rtol=1e-5, atol=1e-5)
    g = ops.pair_giou_start_end(tb, tv, tp, impl=impl)
    assert g.dtype == torch.float32 and g.device == tb.device
    assert_close(g.cpu().numpy(), ops.pair_giou_start_end(boxes, valid, pairs, impl="ref"), rtol=1e-5, atol=1e-5)
    u, v = ops.pair_union_boxes(tb[:, ::2], tv[:, ::2], tp[::3], impl=impl)
    assert u.device == v.device == tb.device
    u_ref, v_ref = ops.pair_union_boxes(boxes[:, ::2].copy(), valid[:, ::2].copy(), pairs[::3].copy(), impl="ref")
    np.testing.assert_array_equal(u.cpu().numpy(), u_ref)
    np.testing.assert_array_equal(v.cpu().numpy(), v_ref)
    u, v = ops.pair_union_boxes(boxes[:, ::2], valid[:, ::2], pairs[::3], impl=impl)
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_equal(v, v_ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("boxes", "valid", "pairs", "match"),
    [
        (np.zeros((2, 3)), np.ones((2, 3), bool), np.zeros((1, 2), int), r"boxes of shape \(N, T, 4\)"),
        (np.zeros((2, 3, 4)), np.ones((2, 4), bool), np.zeros((1, 2), int), r"valid of shape \(N, T\)"),
        (np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.zeros((1, 3), int), r"pairs of shape \(P, 2\)"),
        (np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.array([[0, 2]]), r"pairs\[0\] is \[0, 2\]"),
        (np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.array([[0, -1]]), "pairs to index"),
        (np.zeros((2, 3, 4)), np.ones((2, 3), bool), np.array([[0.5, 1]]), "pairs to hold integers"),
        (np.zeros((2, 3, 4)), np.full((2, 3), 2), np.array([[0, 1]]), "valid to be a boolean mask"),
        (np.full((2, 3, 4), np.nan), np.ones((2, 3), bool), np.array([[0, 1]]), "finite"),
        (np.tile([5.0, 0, 1, 1], (2, 3, 1)), np.ones((2, 3), bool), np.array([[0, 1]]), "x2 >= x1"),
    ],
)
def test_pair_ops_bad_input(impl, boxes, valid, pairs, match):
    for op in (ops.pair_union_boxes, ops.pair_motion_features, ops.pair_giou_start_end):
        with pytest.raises(ValueError, match=match):
            op(boxes, valid, pairs, impl=impl)


def test_invalid_frames_are_not_checked():
    """Boxes where a trajectory does not exist are padding and may hold anything."""
    boxes = np.full((2, 2, 4), np.nan)
    boxes[:, 0] = [0, 0, 5, 5]
    valid = np.array([[True, False], [True, False]])
    for impl in IMPLS:
        assert np.isfinite(ops.pair_motion_features(boxes, valid, np.array([[0, 1]]), impl=impl)).all()


def test_min_size_must_be_positive():
    with pytest.raises(ValueError, match="min_size"):
        ops.pair_motion_features(np.zeros((1, 1, 4)), np.ones((1, 1), bool), np.zeros((0, 2), int), min_size=0)


# ---------------------------------------------------------------------------------------------------------------
# viou_matrix / vpoi_matrix
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["viou_matrix", "vpoi_matrix"])
@SETTINGS
@given(a=trajectories(), b=trajectories(), plus_one=st.booleans())
def test_traj_matrices_match_reference(op, a, b, plus_one):
    ref = getattr(ops, op)(a, b, plus_one=plus_one, impl="ref")
    assert ref.shape == (len(a), len(b)) and ref.dtype == np.float64
    assert np.isfinite(ref).all() and (ref >= 0).all() and (ref <= 1 + 1e-12).all()
    for impl in ("cpp", "torch"):
        assert_close(getattr(ops, op)(a, b, plus_one=plus_one, impl=impl), ref, rtol=1e-12, atol=1e-12)


def test_viou_by_hand():
    # a: frames 0..3 of 10x10 (inclusive) boxes; b: frames 2..5, the same box shifted right by 5 px
    a = (0, np.tile([0.0, 0, 9, 9], (4, 1)))
    b = (2, np.tile([5.0, 0, 14, 9], (4, 1)))
    c = (4, np.tile([0.0, 0, 9, 9], (2, 1)))  # starts where a ends: no common frame
    for impl in IMPLS:
        v = ops.viou_matrix([a], [b, c, a], impl=impl)
        # common frames 2, 3: 2 * 50 px; volumes 400 and 400
        assert_close(v, [[100 / (400 + 400 - 100), 0.0, 1.0]], rtol=1e-15, atol=0)
        p = ops.vpoi_matrix([a], [b, c], impl=impl)
        assert_close(p, [[100 / 200, 0.0]], rtol=1e-15, atol=0)


def test_viou_ref_matches_a_per_frame_loop(rng):
    """viou_ref restated with an explicit frame loop, as the official evaluator writes it."""
    for _ in range(50):
        sa, sb = rng.integers(0, 10, 2)
        ta, tb = (rng.uniform(0, 40, (rng.integers(1, 12), 2)) for _ in range(2))
        ba = np.concatenate([ta, ta + rng.uniform(0, 20, ta.shape)], 1)
        bb = np.concatenate([tb, tb + rng.uniform(0, 20, tb.shape)], 1)
        overlap = 0.0
        for f in range(max(sa, sb), min(sa + len(ba), sb + len(bb))):
            x, y = ba[f - sa], bb[f - sb]
            w = max(0.0, min(x[2], y[2]) - max(x[0], y[0]) + 1)
            h = max(0.0, min(x[3], y[3]) - max(x[1], y[1]) + 1)
            overlap += w * h
        vol = lambda b: sum((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in b)  # noqa: E731
        expected = overlap / (vol(ba) + vol(bb) - overlap)
        assert abs(ops.viou_ref(int(sa), ba, int(sb), bb) - expected) < 1e-12
        assert abs(ops.viou_matrix([(int(sa), ba)], [(int(sb), bb)])[0, 0] - expected) < 1e-12


@pytest.mark.parametrize("impl", IMPLS)
def test_viou_accepts_lists_and_tensors(impl):
    a = [(0, [[0, 0, 9, 9], [0, 0, 9, 9]])]
    out = ops.viou_matrix(a, [(1, torch.tensor([[0.0, 0, 9, 9]]))], impl=impl)
    assert isinstance(out, torch.Tensor)
    assert_close(out.numpy(), [[100 / 200]])
    assert ops.viou_matrix([], a, impl=impl).shape == (0, 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("trajs", "match"),
    [
        ([(-1, np.zeros((1, 4)))], r"trajs_a\[0\] start frame to be a non-negative integer"),
        ([(1.5, np.zeros((1, 4)))], "non-negative integer"),
        ([(0, np.zeros((2, 3)))], r"trajs_a\[0\] boxes of shape \(T, 4\)"),
        ([(0, [[0, 0, np.nan, 1]])], "finite"),
        ([(0, [[3, 0, 1, 1]])], "x2 >= x1"),
        ([(0,)], r"trajs_a\[0\] to be a \(start_frame, boxes\) pair"),
        ("abc", "sequence of"),
    ],
)
def test_viou_bad_input(impl, trajs, match):
    with pytest.raises(ValueError, match=match):
        ops.viou_matrix(trajs, [(0, np.zeros((1, 4)))], impl=impl)


# ---------------------------------------------------------------------------------------------------------------
# fallback without the extension
# ---------------------------------------------------------------------------------------------------------------


def test_fallback_warns_once_and_matches(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_EXT", False)
    monkeypatch.setattr(_ext, "_warned", False)
    a = np.array([[0.0, 0, 9, 9]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ops.box_iou(a, a)
        ops.viou_matrix([(0, a)], [(0, a)])
    assert [str(w.message) for w in caught if "C++ extension not available" in str(w.message)].__len__() == 1
    assert_close(out, [[1.0]])


def test_require_ext_turns_a_missing_extension_into_an_error(tmp_path):
    code = "import sys; sys.modules['uasan._C'] = None; import uasan._ext"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"UASAN_REQUIRE_EXT": "1", "PATH": ""},
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "UASAN_REQUIRE_EXT=1" in proc.stderr
