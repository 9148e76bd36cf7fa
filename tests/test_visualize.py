"""python -m uasan.visualize: every output renders and is valid, hits and misses are the evaluator's, bad input is
named. A hand-built clip (annotation + a tiny PyAV-written video of moving rectangles) gives a case whose outcome
is worked out by hand; a tiny synthetic world gives realistic videos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.legend import Legend
from matplotlib.text import Text

from uasan.data import load_groundtruth, synth
from uasan.evaluation import evaluate_relations, filter_groundtruth, split_categories
from uasan.visualize import STATUS_COLOR, load_view, render
from uasan.visualize.__main__ import main
from uasan.visualize.frames import MIN_OVERLAY_HEIGHT

av = pytest.importorskip("av")

FRAMES, W, H = 36, 128, 72  # the clip's annotation; its video file is half the size
SPLIT = {"objects": {"base": ["person", "dog"], "novel": ["car"]},
         "predicates": {"base": ["left", "right"], "novel": ["toward", "away"]}}  # fmt: skip


def _track(x0: float, y0: float, dx: float, size: tuple[int, int]) -> np.ndarray:
    """(FRAMES, 4) a box moving horizontally by dx pixels per frame (annotation pixels)."""
    x = x0 + dx * np.arange(FRAMES)
    return np.stack([x, np.full(FRAMES, y0), x + size[0] - 1, np.full(FRAMES, y0 + size[1] - 1)], axis=1).round()


TRACKS = {0: ("person", _track(4, 10, 2.0, (20, 30))), 1: ("dog", _track(100, 40, -2.0, (24, 20))),
          2: ("car", _track(50, 4, 0.5, (30, 16)))}  # fmt: skip
COLORS = {0: (220, 30, 30), 1: (30, 60, 220), 2: (30, 180, 60)}
GT = [(0, "left", 1, 0, 36), (1, "right", 0, 0, 36), (0, "toward", 2, 10, 30), (2, "away", 1, 0, 20)]


def _write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (W // 2, H // 2)) -> Path:
    """The clip at half the annotation's size: coloured rectangles on grey, where the annotation puts them."""
    w, h = size
    with av.open(str(path), "w") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        s = out.add_stream(codec, rate=30)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p" if w % 2 == h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sizes
        for f in range(frames):
            img = np.full((h, w, 3), 128, np.uint8)
            for tid, (_, boxes) in TRACKS.items():
                if f < len(boxes):
                    x1, y1, x2, y2 = (boxes[f] * w / W).astype(int)
                    img[y1 : y2 + 1, x1 : x2 + 1] = COLORS[tid]
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A data set root with one test video 'clip' (VidVRD layout, own split) and its video file clip.mp4."""
    root = tmp_path_factory.mktemp("clip")
    (root / "test").mkdir()
    (root / "train").mkdir()
    trajs = [[{"tid": t, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), b[f].tolist(), strict=True))}
              for t, (_, b) in TRACKS.items()] for f in range(FRAMES)]  # fmt: skip
    ann = {"video_id": "clip", "frame_count": FRAMES, "fps": 30, "width": W, "height": H,
           "subject/objects": [{"tid": t, "category": c} for t, (c, _) in TRACKS.items()], "trajectories": trajs,
           "relation_instances": [{"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": e}
                                  for s, p, o, b, e in GT]}  # fmt: skip
    (root / "test" / "clip.json").write_text(json.dumps(ann))
    (root / "train" / "clip_train.json").write_text(json.dumps({**ann, "video_id": "clip_train"}))
    (root / "splits.json").write_text(json.dumps(SPLIT))
    _write_video(root / "clip.mp4")
    return root


def _pred(s: int, p: str, o: int, b: int, e: int, score: float, obj_boxes: int | None = None) -> dict:
    (cs, bs), co = TRACKS[s], TRACKS[o][0]
    bo = TRACKS[o if obj_boxes is None else obj_boxes][1]
    return {"triplet": [cs, p, co], "score": score, "duration": [b, e], "sub_traj": bs[b:e].tolist(),
            "obj_traj": bo[b:e].tolist()}  # fmt: skip


# By hand: a takes g0; b repeats a (g0 taken: false positive); c has g1's triplet on the car's boxes (vIoU 0:
# false positive); d takes g2 (novel predicate); e would take g3 but ranks fifth.
CASE = [
    _pred(0, "left", 1, 0, 36, 0.9),  # a
    _pred(0, "left", 1, 0, 36, 0.8),  # b
    _pred(1, "right", 0, 0, 36, 0.7, obj_boxes=2),  # c
    _pred(0, "toward", 2, 10, 30, 0.6),  # d
    _pred(2, "away", 1, 0, 20, 0.1),  # e
]


@pytest.fixture(scope="module")
def case_file(clip) -> Path:
    path = clip / "pred.json"
    path.write_text(json.dumps({"version": "VERSION 1.0", "results": {"clip": CASE}}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, str]:
    """A tiny synthetic world, predictions made from its test ground truth (jittered copies, wrong predicates)."""
    root = synth.generate(tmp_path_factory.mktemp("world"), size="tiny", seed=5, progress=False)
    gt = load_groundtruth(root, "test")
    rng = np.random.default_rng(0)
    names = json.loads((root / "splits.json").read_text())["predicates"]
    results = {}
    for vid, rels in gt.items():
        out = []
        for r in rels:
            sub = np.asarray(r["sub_traj"]) + rng.normal(0, 4 * rng.random(), (len(r["sub_traj"]), 4))
            sub[:, 2:] = np.maximum(sub[:, 2:], sub[:, :2])
            out.append({"triplet": list(r["triplet"]), "score": float(rng.random()), "duration": list(r["duration"]),
                        "sub_traj": sub.tolist(), "obj_traj": r["obj_traj"]})  # fmt: skip
            wrong = [r["triplet"][0], str(rng.choice(names["novel"] + names["base"])), r["triplet"][2]]
            out.append({**out[-1], "triplet": wrong, "score": float(rng.random())})
        results[vid] = out
    path = root / "pred.json"
    path.write_text(json.dumps({"version": "VERSION 1.0", "results": results}))
    return root, path, next(iter(gt))


# ----------------------------------------------------------------------------------------------------------------
# hits and misses: the evaluator's decisions
# ----------------------------------------------------------------------------------------------------------------


def _status(rendered, kind: str) -> dict[int, tuple[str, str]]:
    return {r.index: (r.status, r.color) for r in rendered.timeline if r.kind == kind}


def test_constructed_case_all_split(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", split="all", top_k=4)
    out = render(view, tmp_path / "t.png", what="timeline")
    pred, gt = _status(out, "pred"), _status(out, "gt")
    assert {i: s for i, (s, _) in pred.items()} == {0: "hit", 1: "false_positive", 2: "false_positive", 3: "hit"}
    assert {g: s for g, (s, _) in gt.items()} == {0: "recalled", 1: "missed", 2: "recalled", 3: "missed"}
    assert all(c == STATUS_COLOR[s] for s, c in [*pred.values(), *gt.values()])
    assert STATUS_COLOR["hit"] != STATUS_COLOR["false_positive"] and STATUS_COLOR["recalled"] != STATUS_COLOR["missed"]
    rows = {(r.kind, r.index): r for r in out.timeline}
    assert rows["pred", 0].matched == 0 and rows["pred", 3].matched == 2 and rows["gt", 2].matched == 3
    assert [r.novel for r in out.timeline if r.kind == "pred"] == [False, False, False, True]  # "toward"
    assert 4 not in pred  # e ranks fifth: not drawn, and g3 stays missed
    # the whole list: e now takes g3; g1 stays missed
    full = load_view(clip, case_file, "clip", split="all", top_k=5)
    assert full.match.pred_hit.tolist() == [True, False, False, True, True]
    assert full.match.gt_hit.tolist() == [True, False, True, True]


def test_constructed_case_novel_split(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", split="novel", top_k=4)
    out = render(view, tmp_path / "t.png", what="timeline")
    assert [r.label.split(" ", 1)[1] for r in out.timeline if r.kind == "gt"] == [
        "car#2 away dog#1",
        "person#0 toward car#2",
    ]
    # predictions are not filtered: base-predicate predictions stay and are false positives
    assert {i: s for i, (s, _) in _status(out, "pred").items()} == {
        0: "false_positive",
        1: "false_positive",
        2: "false_positive",
        3: "hit",
    }


@pytest.mark.parametrize("split", ["all", "novel"])
@pytest.mark.parametrize("k", [3, 50])
def test_hits_are_the_evaluators_recall_numerator(world, split, k):
    root, pred_file, _ = world
    gt_all = load_groundtruth(root, "test")
    results = json.loads(pred_file.read_text())["results"]
    objects, preds = split_categories(json.loads((root / "splits.json").read_text()), split)
    gt_all = filter_groundtruth(gt_all, objects, preds)
    for vid, gt in gt_all.items():
        if not gt:
            continue
        view = load_view(root, pred_file, vid, split=split, top_k=k)
        r = evaluate_relations({vid: gt}, {vid: results[vid]}, det_nreturns=(k,), tag_nreturns=())[f"R@{k}"]
        assert view.hits() == round(r * len(gt)) == sum(row.status == "hit" for row in render_rows(view))
        assert view.match.gt_hit.sum() == view.hits()


def render_rows(view):
    from uasan.visualize import timeline_rows

    return timeline_rows(view)


# ----------------------------------------------------------------------------------------------------------------
# outputs are valid files
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["summary", "timeline", "keyframes", "graph"])
def test_png_of_a_synthetic_world_video(world, what, tmp_path):
    root, pred_file, vid = world
    out = tmp_path / f"{what}.png"
    assert main(["--data-root", str(root), "--predictions", str(pred_file), "--video", vid, "--out", str(out),
                 "--what", what, "--top", "20"]) == 0  # fmt: skip
    img = imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # something was drawn


def test_keyframes_boxes_and_graph(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", split="all", top_k=4)
    out = render(view, tmp_path / "k.png", video_file=clip / "clip.mp4", frames=3, segment=0)
    assert len(out.frames) == 3
    gt_boxes = [b for b in out.boxes if b.kind == "gt"]
    assert {(b.id, b.frame) for b in gt_boxes} == {(t, f) for t in TRACKS for f in out.frames}
    for b in gt_boxes:  # boxes of the annotation, coloured per object
        assert b.box == tuple(TRACKS[b.id][1][b.frame]) and b.color == view.gt_colors[b.id]
    preds = [b for b in out.boxes if b.kind == "pred"]
    assert preds and all(b.color == view.gt_colors[view.tracks[b.id].gt_tid] for b in preds)  # tracks follow GT
    # c's object is labelled person but follows the car: its own track, in the car's colour
    assert [(t.category, t.gt_tid) for t in view.tracks] == [("person", 0), ("dog", 1), ("person", 2), ("car", 2)]
    assert len({view.gt_colors[t] for t in TRACKS}) == len(TRACKS)
    (graph,) = out.graphs
    assert graph.segment == (0, 30)
    assert sorted((e.src, e.predicate, e.dst, e.status) for e in graph.edges) == [
        ("car#2", "away", "dog#1", "missed"),  # e ranks fifth
        ("dog#1", "right", "car#2", "false_positive"),  # c: g1's triplet on the car's boxes
        ("dog#1", "right", "person#0", "missed"),  # g1
        ("person#0", "left", "dog#1", "false_positive"),  # b
        ("person#0", "left", "dog#1", "hit"),  # a
        ("person#0", "toward", "car#2", "hit"),  # d
    ]


def test_mp4_overlay_has_the_videos_frames_scaled_to_a_legible_size(clip, case_file, tmp_path):
    out = tmp_path / "o.mp4"
    assert main(["--data-root", str(clip), "--predictions", str(case_file), "--video", "clip", "--top", "4",
                 "--video-file", str(clip / "clip.mp4"), "--out", str(out)]) == 0  # fmt: skip
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    # the 64 × 36 video is scaled up to 360 pixels high (its aspect kept): 5 output pixels per annotation pixel
    assert len(frames) == FRAMES and frames[0].shape == (MIN_OVERLAY_HEIGHT, 640, 3)
    # the video's own pixels are kept: the middle of the person's rectangle at frame 20 is red
    x1, y1, x2, y2 = (TRACKS[0][1][20] * 5).astype(int)
    patch = frames[20][y1 + 40 : y2 - 30, x1 + 30 : x2 - 20].reshape(-1, 3).mean(0)
    assert patch[0] > 150 and patch[1] < 100 and patch[2] < 100


def test_overlay_text_scales_with_the_frame(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", top_k=4)
    small = render(view, tmp_path / "s.mp4", video_file=_write_video(tmp_path / "s.mp4", 3, (160, 120))).overlay
    big = render(view, tmp_path / "b.mp4", video_file=_write_video(tmp_path / "b.mp4", 3, (720, 540))).overlay
    assert (small["width"], small["height"]) == (480, 360) and (big["width"], big["height"]) == (720, 540)
    assert small["font_px"] >= 10 and big["font_px"] == pytest.approx(small["font_px"] * 1.5)


def test_odd_sized_video_is_padded_to_even(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", top_k=4)
    for size, expected in (((W // 2 - 1, H // 2 - 1), (648, 360)), ((401, 361), (402, 362))):
        odd = _write_video(tmp_path / "odd.mp4", frames=3, size=size)
        info = render(view, tmp_path / "o.mp4", video_file=odd).overlay
        assert info["frames"] == 3 and (info["width"], info["height"]) == expected
        with av.open(str(tmp_path / "o.mp4")) as c:
            assert [(f.width, f.height) for f in c.decode(video=0)] == [expected] * 3


def test_html_report_references_existing_assets(clip, case_file, tmp_path):
    out = tmp_path / "report" / "clip.html"
    assert main(["--data-root", str(clip), "--predictions", str(case_file), "--video", "clip", "--top", "4",
                 "--video-file", str(clip / "clip.mp4"), "--out", str(out)]) == 0  # fmt: skip
    page = out.read_text()
    refs = re.findall(r'src="([^"]+)"', page)
    assert {Path(r).name for r in refs} == {"timeline.png", "keyframes.png", "graph.png", "overlay.mp4"}
    for r in refs:
        assert not Path(r).is_absolute() and (out.parent / r).is_file()
        if r.endswith(".png"):
            assert imread(out.parent / r).ndim == 3
    assert "2 hits" in page and page.count(">missed<") == 2 and page.count(">hit<") == 2


def test_html_without_video_file_on_a_world(world, tmp_path):
    root, pred_file, vid = world
    out = tmp_path / "w.html"
    assert main(["--data-root", str(root), "--predictions", str(pred_file), "--video", vid, "--out", str(out)]) == 0
    refs = re.findall(r'src="([^"]+)"', out.read_text())
    assert len(refs) == 3 and all((tmp_path / r).is_file() for r in refs)


# ----------------------------------------------------------------------------------------------------------------
# legibility, checked on the drawn figures (matplotlib's renderer gives every text's extent)
# ----------------------------------------------------------------------------------------------------------------


def _extent(artist, renderer) -> tuple[float, float, float, float]:
    """Display box of a text with its background box, or of a patch."""
    if isinstance(artist, Text) and artist.get_bbox_patch() is not None:
        artist = artist.get_bbox_patch()
    e = artist.get_window_extent(renderer)
    return e.x0, e.y0, e.x1, e.y1


def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


def _inside(a, b) -> bool:
    return a[0] >= b[0] - 0.5 and a[1] >= b[1] - 0.5 and a[2] <= b[2] + 0.5 and a[3] <= b[3] + 0.5


def _white_band(path: Path) -> int:
    """Height in pixels of the tallest band of blank rows."""
    blank = (imread(path)[..., :3] > 0.97).all(axis=(1, 2))
    best = run = 0
    for b in blank:
        run = run + 1 if b else 0
        best = max(best, run)
    return best


def test_help_reads_without_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text and ":mod:" not in text
    assert "python -m uasan.visualize: pictures of one video" in text and "OUT_files/" in text


def test_one_hit_is_singular(clip, case_file, tmp_path, capsys):
    view = load_view(clip, case_file, "clip", top_k=1)  # a takes g0: one hit
    out = render(view, tmp_path / "t.png", what="timeline")
    (ax,) = out.figure.axes
    assert ax.get_title(loc="left").endswith(", 1 hit")
    assert main(["--data-root", str(clip), "--predictions", str(case_file), "--video", "clip", "--top", "1",
                 "--out", str(tmp_path / "r.html")]) == 0  # fmt: skip
    assert "1 hit in the top 1 of 5 predictions" in capsys.readouterr().out
    assert "<b>1 hit</b>" in (tmp_path / "r.html").read_text()


def test_timeline_title_is_clear_of_the_legend(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", top_k=4)
    view.video_id = "a_video_with_a_very_long_identifier_" * 2
    fig = render(view, tmp_path / "t.png", what="timeline").figure
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    (title,) = [t for t in fig.findobj(Text) if t.get_text() == ax.get_title(loc="left")]
    (legend,) = fig.findobj(Legend)
    box, fig_box = _extent(title, renderer), tuple(fig.bbox.extents)
    assert title.get_text().endswith("2 hits") and _inside(box, fig_box)
    assert not _overlaps(box, _extent(legend, renderer)) and _inside(_extent(legend, renderer), fig_box)


def test_keyframes_are_large_and_their_labels_whole(clip, case_file, tmp_path):
    view = load_view(clip, case_file, "clip", top_k=4)
    out = render(view, tmp_path / "k.png", what="keyframes", video_file=clip / "clip.mp4", frames=6)
    fig = out.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes) == 6
    names = {b.label for b in out.boxes}
    for ax, f in zip(fig.axes, out.frames, strict=True):
        frame = tuple(ax.get_window_extent(renderer).extents)
        assert frame[2] - frame[0] >= 0.3 * fig.bbox.width  # three a row
        labels = [t for t in ax.texts if t.get_bbox_patch() is not None]
        drawn = sorted(b.label for b in out.boxes if b.frame == f)
        assert sorted(t.get_text() for t in labels) == drawn and set(drawn) <= names  # whole names, one per box
        boxes = [_extent(t, renderer) for t in labels]
        assert all(_inside(b, frame) for b in boxes)  # inside the image: nothing cut off
        assert not any(_overlaps(a, b) for k, a in enumerate(boxes) for b in boxes[k + 1 :])
    # the car's box touches the top of the frame: its label, above the box where there is room, moved inside
    assert any(b.kind == "gt" and b.box[1] < 8 for b in out.boxes)


# several predicates between the same pairs, both directions: the labels of one graph crowd the middle
CROWD = [_pred(s, p, o, 0, 30, 0.9 - 0.01 * k) for k, (s, p, o) in enumerate(
    (s, p, o) for s, o in ((0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)) for p in ("left", "right", "toward", "away")
)]  # fmt: skip


def _graph_labels_apart(fig) -> int:
    """Checks every graph of ``fig``: edge labels inside the axes, clear of each other and of the nodes; returns
    the number of labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    count = 0
    for ax in [ax for ax in fig.axes if any(t.get_gid() == "node" for t in ax.texts)]:
        frame = tuple(ax.get_window_extent(renderer).extents)
        labels = [_extent(a, renderer) for a in ax.patches if a.get_gid() == "edge-label"]
        nodes = [_extent(t, renderer) for t in ax.texts if t.get_gid() == "node"]
        lines = [_extent(t, renderer) for t in ax.texts if t.get_gid() is None and t.get_text()]
        assert all(_inside(b, frame) for b in labels)
        assert not any(_overlaps(a, b) for k, a in enumerate(labels) for b in labels[k + 1 :] + nodes)
        assert all(any(_inside(t, b) for b in labels) for t in lines)  # every predicate inside its label's box
        count += len(labels)
    return count


def test_graph_edge_labels_do_not_overlap(clip, tmp_path):
    view = load_view(clip, {"clip": CROWD}, "clip", top_k=len(CROWD))
    out = render(view, tmp_path / "g.png", what="graph", segment=0)
    (graph,) = out.graphs
    assert len(graph.edges) == len(CROWD)
    assert _graph_labels_apart(out.figure) == 6  # one label per ordered pair, four lines each
    lines = [t.get_text() for t in out.figure.axes[0].texts if t.get_gid() is None]
    assert sorted(lines) == sorted(p for _, p, _ in (r["triplet"] for r in CROWD))


def test_summary_of_a_world_video_reads_well(world, tmp_path):
    root, pred_file, _ = world
    for vid in sorted(load_groundtruth(root, "test"))[:2]:
        view = load_view(root, pred_file, vid, top_k=20)
        out = render(view, tmp_path / f"{vid}.png")
        assert _graph_labels_apart(out.figure) > 0
        assert _white_band(out.files[0]) < 0.6 * 90  # no empty band: sections sized to their pictures


# ----------------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------------


def test_unknown_video(clip, case_file):
    with pytest.raises(ValueError, match=r"--video: 'nope' is not annotated"):
        load_view(clip, case_file, "nope")


def test_predictions_for_another_data_set(clip, world, tmp_path, capsys):
    _, other, _ = world  # the synthetic world's predictions name its own videos
    with pytest.raises(ValueError, match=r"--predictions: .* names video 'SYNTH_test_\d+'.*another data set"):
        load_view(clip, other, "clip")
    bad = dict(CASE[0], triplet=["person", "chase", "dog"])  # a predicate outside the clip's vocabulary
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"results": {"clip": [bad]}}))
    with pytest.raises(ValueError, match=r"--predictions: .*results\['clip'\]\[0\] field 'triplet': 'chase'"):
        load_view(clip, path, "clip")
    assert main(["--data-root", str(clip), "--predictions", str(path), "--video", "clip", "--out", "x.png"]) == 2
    assert "uasan.visualize: error: --predictions" in capsys.readouterr().err


def test_bad_files_and_arguments(clip, case_file, tmp_path):
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(ValueError, match="--predictions: .* not a JSON file"):
        load_view(clip, tmp_path / "nojson.json", "clip")
    bad = dict(CASE[0], score="high")
    (tmp_path / "score.json").write_text(json.dumps({"results": {"clip": [bad]}}))
    with pytest.raises(ValueError, match=r"--predictions: .*prediction\['clip'\]\[0\] field 'score'"):
        load_view(clip, tmp_path / "score.json", "clip")
    with pytest.raises(ValueError, match="--top"):
        load_view(clip, case_file, "clip", top_k=0)
    with pytest.raises(ValueError, match="--data-root"):
        load_view(tmp_path / "missing", case_file, "clip")
    view = load_view(clip, case_file, "clip")
    with pytest.raises(ValueError, match="--out"):
        render(view, tmp_path / "x.txt")
    with pytest.raises(ValueError, match="--video-file: an MP4 overlay"):
        render(view, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="--video-file: .* does not exist"):
        render(view, tmp_path / "x.mp4", video_file=tmp_path / "none.mp4")
    with pytest.raises(ValueError, match="--video-file: .* not a readable video"):
        render(view, tmp_path / "x.mp4", video_file=case_file)
    with pytest.raises(ValueError, match=r"--segment: expected a segment index in \[0, 1\)"):
        render(view, tmp_path / "x.png", segment=1)
    with pytest.raises(ValueError, match="--graphs"):
        render(view, tmp_path / "x.png", graphs=0)
    with pytest.raises(ValueError, match="--what"):
        render(view, tmp_path / "x.html", what="timeline")
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.png").exists()


def test_missing_pyav_is_a_clear_error(clip, case_file, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # import av now raises ImportError
    view = load_view(clip, case_file, "clip")
    with pytest.raises(ValueError, match=r'--video-file: .*PyAV.*pip install "uasan\[visualize\]"'):
        render(view, tmp_path / "x.mp4", video_file=clip / "clip.mp4")
    render(view, tmp_path / "ok.png")  # pictures without a video file need no PyAV


def test_run_picture(world, tmp_path):
    from uasan.visualize import run_picture

    root, pred_file, vid = world
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "PredCls_novel.json").write_bytes(pred_file.read_bytes())
    path = run_picture(tmp_path, root)
    assert path == tmp_path / "visualize" / f"{vid}.png" and imread(path).ndim == 3
