"""Workloads and the official pipeline for ``bench_eval.py`` (not collected by pytest: no ``bench_`` prefix).

* :func:`write_workload` writes a data set root in the VidOR layout (``annotation/validation/XXXX/<vid>.json``,
  integer pixel boxes, ``generated`` / ``tracker`` fields as in the release) or the VidVRD layout (``test/<vid>.json``)
  and one official prediction file, cached under the temp folder so that a session generates it once.
* :func:`official_pipeline` restates what a user of VidVRD-helper runs (``dataset/{vidvrd,vidor}.py``: the
  annotation load, ``get_relation_insts``; ``json.load`` of the predictions; ``evaluation/
  visual_relation_detection.py``: ``evaluate`` with ``common.py``'s ``viou`` and ``voc_ap``), written anew here
  from the published algorithm (the helper is not vendored).

``python eval_workload.py official|uasan|uasan_all ROOT PRED DATASET`` runs one pipeline and prints its wall time,
peak RSS (``VmHWM``), ``ru_maxrss``, the anonymous / file-backed split of the resident set sampled every millisecond
(the pages of a memory-mapped file count as resident once read) and the metrics as JSON: the subprocess of the
benchmark's peak-memory row. ``python eval_workload.py write NAME`` writes a workload (``vidor``, ``vidvrd``,
``vidor-float``: 800 VidOR-sized videos with full-precision float prediction boxes, a ~1.4 GB prediction file) and
prints its root and prediction file.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str  # "vidor" | "vidvrd"
    n_videos: int
    preds: int  # predictions per video
    frames_median: float
    frames_range: tuple[int, int]
    objects: tuple[int, int]  # per video, [lo, hi)
    relations: tuple[int, int]  # ground-truth relations per video, [lo, hi)
    gt_len_median: float  # frames of a ground-truth relation
    pred_len_median: float  # frames of a prediction not derived from the ground truth
    near: float = 1 / 3  # share of predictions near a ground-truth relation (its triplet, jittered boxes)
    n_objects: int = 80
    n_predicates: int = 50
    seed: int = 0
    decimals: int | None = 1  # prediction boxes rounded to this many decimals (None: full float64 precision)


# VidOR validation: 835 videos of ~30 s; VidVRD test: 200 videos of ~10 s (35 objects, 132 predicates).
VIDOR = Workload("vidor", "vidor", 835, 200, 800, (150, 5400), (2, 9), (5, 41), 90, 30)
VIDVRD = Workload("vidvrd", "vidvrd", 200, 200, 350, (120, 1200), (2, 7), (10, 31), 60, 45, n_objects=35,
                  n_predicates=132)  # fmt: skip
# The size of a file a detector writes without rounding: full-precision floats (~17 digits each), ~1.4 GB.
VIDOR_FLOAT = Workload("vidor-float", "vidor", 800, 200, 800, (150, 5400), (2, 9), (5, 41), 90, 30, decimals=None)
WORKLOADS = {w.name: w for w in (VIDOR, VIDVRD, VIDOR_FLOAT)}


def smoke(w: Workload) -> Workload:
    """The same shape of data, small enough for the CI's smoke run."""
    return Workload(**{**asdict(w), "name": w.name + "-smoke", "n_videos": 6, "preds": 25, "frames_median": 120,
                       "frames_range": (40, 300)})  # fmt: skip


def _track(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames, 4) smoothly moving integer box inside a 640 x 480 frame."""
    wh = rng.uniform(30, 250, 2)
    xy = rng.uniform(0, 640 - wh[0], 1), rng.uniform(0, 480 - wh[1], 1)
    walk = np.cumsum(rng.normal(0, 1.5, (frames, 2)), axis=0) + np.concatenate(xy)
    walk = np.clip(walk, 0, [640 - wh[0], 480 - wh[1]])
    return np.round(np.concatenate([walk, walk + wh], axis=1))


def _span(rng, lo: int, hi: int, median: float) -> tuple[int, int]:
    n = int(np.clip(rng.lognormal(np.log(median), 0.7), 2, hi - lo))
    b = int(rng.integers(lo, hi - n + 1))
    return b, b + n


def _video(rng: np.random.Generator, w: Workload, vid: str, folder: str, objects: list, predicates: list) -> tuple:
    frames = int(np.clip(rng.lognormal(np.log(w.frames_median), 0.6), *w.frames_range))
    k = int(rng.integers(*w.objects))
    spans = [(int(rng.integers(0, frames // 3)), frames - int(rng.integers(0, frames // 3))) for _ in range(k)]
    tracks = [_track(rng, frames) for _ in range(k)]
    cats = [objects[i] for i in rng.integers(len(objects), size=k)]
    vid_preds = [predicates[i] for i in rng.choice(len(predicates), 12, replace=False)]
    rels = []
    for _ in range(int(rng.integers(*w.relations))):
        s, o = (int(x) for x in rng.choice(k, 2, replace=False))
        lo, hi = max(spans[s][0], spans[o][0]), min(spans[s][1], spans[o][1])
        if hi - lo < 2:
            continue
        b, e = _span(rng, lo, hi, w.gt_len_median)
        rels.append((s, o, vid_preds[rng.integers(12)], b, e))
    trajs = []
    for f in range(frames):
        items = [f'{{"tid": {t}, "bbox": {{"xmin": {int(tracks[t][f, 0])}, "ymin": {int(tracks[t][f, 1])}, '
                 f'"xmax": {int(tracks[t][f, 2])}, "ymax": {int(tracks[t][f, 3])}}}, "generated": 0, '
                 f'"tracker": "none"}}' for t in range(k) if spans[t][0] <= f < spans[t][1]]  # fmt: skip
        trajs.append("[" + ", ".join(items) + "]")
    head = {"version": "VERSION 1.0", "video_id": vid, "video_hash": vid, "video_path": f"{folder}/{vid}.mp4",
            "frame_count": frames, "fps": 29.97, "width": 640, "height": 480,
            "subject/objects": [{"tid": t, "category": c} for t, c in enumerate(cats)]}  # fmt: skip
    insts = [
        {"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": e} for s, o, p, b, e in rels
    ]
    text = (json.dumps(head)[:-1] + ', "trajectories": [' + ", ".join(trajs) + '], "relation_instances": '
            + json.dumps(insts) + "}")  # fmt: skip
    preds = []
    for _ in range(w.preds):
        if rels and rng.random() < w.near:
            s, o, p, b0, e0 = rels[rng.integers(len(rels))]
            b = int(np.clip(b0 + rng.integers(-15, 16), 0, frames - 2))
            e = int(np.clip(e0 + rng.integers(-15, 16), b + 1, frames))
        else:
            s, o = (int(x) for x in rng.choice(k, 2, replace=False))
            p = vid_preds[rng.integers(12)]
            b, e = _span(rng, 0, frames, w.pred_len_median)
        boxes = [tracks[x][b:e] + rng.normal(0, 4, (e - b, 4)) for x in (s, o)]
        if w.decimals is not None:
            boxes = [np.round(bx, w.decimals) for bx in boxes]
        for bx in boxes:
            bx[:, 2:] = np.maximum(bx[:, 2:], bx[:, :2])
        preds.append({"triplet": [cats[s], p, cats[o]], "score": float(rng.random()), "duration": [b, e],
                      "sub_traj": boxes[0], "obj_traj": boxes[1]})  # fmt: skip
    return text, preds


def write_workload(w: Workload, progress: bool = True) -> tuple[Path, Path]:
    """(data set root, prediction file) of ``w``, generated once into the temp folder."""
    import orjson
    from tqdm import tqdm

    base = Path(tempfile.gettempdir()) / f"uasan-bench-eval-{w.name}-v1-{w.n_videos}x{w.preds}-s{w.seed}"
    root, pred_path = base / "data", base / "predictions.json"
    if (base / "done").exists():
        return root, pred_path
    rng = np.random.default_rng(w.seed)
    objects = [f"object_{i}" for i in range(w.n_objects)]
    predicates = [f"predicate_{i}" for i in range(w.n_predicates)]
    results = {}
    for v in tqdm(range(w.n_videos), desc=f"writing the {w.name} workload", disable=not progress, leave=False):
        vid, folder = f"{1000000000 + 7919 * v}", f"{v % 100:04d}"
        if w.dataset == "vidor":
            path = root / "annotation" / "validation" / folder / f"{vid}.json"
        else:
            path = root / "test" / f"{vid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text, preds = _video(rng, w, vid, folder, objects, predicates)
        path.write_text(text)
        results[vid] = preds
    pred_path.write_bytes(orjson.dumps({"version": "VERSION 1.0", "results": results},
                                       option=orjson.OPT_SERIALIZE_NUMPY))  # fmt: skip
    (base / "done").write_text("ok")
    return root, pred_path


# ---------------------------------------------------------------------------------------------------------------
# the official pipeline, restated (VidVRD-helper)
# ---------------------------------------------------------------------------------------------------------------


def _relation_insts(anno: dict) -> list[dict]:
    """dataset.py get_relation_insts: per-frame {tid: box tuple}, then each relation's boxes over its duration."""
    cats = {so["tid"]: so["category"] for so in anno["subject/objects"]}
    frames = [{b["tid"]: (b["bbox"]["xmin"], b["bbox"]["ymin"], b["bbox"]["xmax"], b["bbox"]["ymax"]) for b in fr}
              for fr in anno["trajectories"]]  # fmt: skip
    out = []
    for r in anno["relation_instances"]:
        s, o, b, e = r["subject_tid"], r["object_tid"], r["begin_fid"], r["end_fid"]
        out.append({"triplet": (cats[s], r["predicate"], cats[o]), "subject_tid": s, "object_tid": o,
                    "duration": (b, e), "sub_traj": [fr[s] for fr in frames[b:e]],
                    "obj_traj": [fr[o] for fr in frames[b:e]]})  # fmt: skip
    return out


def official_groundtruth(root: Path, dataset: str) -> dict:
    """VidOR(low_memory=True): every file loaded (trajectories dropped), then re-read by get_anno for
    get_relation_insts; VidVRD: every file loaded once and kept."""
    if dataset == "vidor":
        files = sorted(glob.glob(os.path.join(root, "annotation", "validation", "*", "*.json")))
        index = {}
        for path in files:
            with open(path) as f:
                anno = json.load(f)
            del anno["trajectories"]
            index[anno["video_id"]] = anno
        gt = {}
        for vid, anno in index.items():
            with open(os.path.join(root, "annotation", "validation", anno["video_path"].replace(".mp4", ".json"))) as f:
                gt[vid] = _relation_insts(json.load(f))
        return gt
    annos = {}
    for path in sorted(glob.glob(os.path.join(root, "test", "*.json"))):
        with open(path) as f:
            anno = json.load(f)
        annos[anno["video_id"]] = anno
    return {vid: _relation_insts(anno) for vid, anno in annos.items()}


def _viou(t1, d1, t2, d2) -> float:
    """common.py viou: inclusive-pixel volume IoU over the common frames, whole-trajectory volumes."""
    lo, hi = max(d1[0], d2[0]), min(d1[1], d2[1])
    if lo >= hi:
        return 0.0
    ov = 0
    for f in range(lo, hi):
        a, b = t1[f - d1[0]], t2[f - d2[0]]
        ov += max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    v1 = 0
    for a in t1:
        v1 += (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    v2 = 0
    for b in t2:
        v2 += (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(ov) / (v1 + v2 - ov)


def _voc_ap(rec, prec) -> float:
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _curves(hit_scores: np.ndarray, n: int):
    tp = np.isfinite(hit_scores)
    cum_tp = np.cumsum(tp).astype(np.float32)
    cum_fp = np.cumsum(~tp).astype(np.float32)
    return cum_tp / np.maximum(cum_tp + cum_fp, np.finfo(np.float32).eps), cum_tp / np.maximum(
        n, np.finfo(np.float32).eps
    )


def official_evaluate(groundtruth: dict, prediction: dict, viou_threshold: float = 0.5,
                      det_nreturns=(50, 100), tag_nreturns=(1, 5, 10)) -> dict:  # fmt: skip
    """visual_relation_detection.py evaluate (eval_detection_scores, eval_tagging_scores), without the prints."""
    video_ap, tot_scores, tot_tp, prec_at_n, n_gt = {}, defaultdict(list), defaultdict(list), defaultdict(list), 0
    for vid, gts in groundtruth.items():
        if len(gts) == 0:
            continue
        n_gt += len(gts)
        preds = sorted(prediction.get(vid, []), key=lambda x: x["score"], reverse=True)
        detected = np.zeros(len(gts), dtype=bool)
        hit = np.ones(len(preds)) * -np.inf
        for pi, p in enumerate(preds):
            ov_max, k_max = -float("Inf"), -1
            for gi, g in enumerate(gts):
                if not detected[gi] and tuple(p["triplet"]) == tuple(g["triplet"]):
                    s_iou = _viou(p["sub_traj"], p["duration"], g["sub_traj"], g["duration"])
                    o_iou = _viou(p["obj_traj"], p["duration"], g["obj_traj"], g["duration"])
                    ov = min(s_iou, o_iou)
                    if ov >= viou_threshold and ov > ov_max:
                        ov_max, k_max = ov, gi
            if k_max >= 0:
                hit[pi] = p["score"]
                detected[k_max] = True
        prec, rec = _curves(hit, len(gts))
        video_ap[vid] = _voc_ap(rec, prec)
        tp = np.isfinite(hit)
        for k in det_nreturns:
            cut = min(k, hit.size)
            tot_scores[k].append(hit[:cut])
            tot_tp[k].append(tp[:cut])
        gt_triplets = {tuple(g["triplet"]) for g in gts}
        seen, tag_hit = [], []
        for p in preds:
            t = tuple(p["triplet"])
            if t not in seen:
                seen.append(t)
                tag_hit.append(p["score"] if t in gt_triplets else -np.inf)
        tprec, _ = _curves(np.asarray(tag_hit), len(gt_triplets))
        for k in tag_nreturns:
            cut = min(k, tprec.size)
            prec_at_n[k].append(tprec[cut - 1] if cut > 0 else 0.0)
    out = {"mAP": float(np.mean(list(video_ap.values())))}
    for k in det_nreturns:
        tps = np.concatenate(tot_tp[k])[np.argsort(np.concatenate(tot_scores[k]))[::-1]]
        out[f"R@{k}"] = float((np.cumsum(tps).astype(np.float32) / np.maximum(n_gt, np.finfo(np.float32).eps))[-1])
    for k in tag_nreturns:
        out[f"P@{k}"] = float(np.mean(prec_at_n[k]))
    return out


def official_pipeline(root: Path, pred_path: Path, dataset: str) -> dict:
    gt = official_groundtruth(root, dataset)
    with open(pred_path) as f:
        pred = json.load(f)
    return official_evaluate(gt, pred["results"])


def uasan_pipeline(root: Path, pred_path: Path, dataset: str, check_boxes: str = "used") -> dict:
    from uasan.evaluation import evaluate_files

    return evaluate_files(root, pred_path, check_boxes=check_boxes)


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (Linux), else getrusage. ru_maxrss alone would not do: across fork + exec
    Linux carries the parent's high-water mark into the child's, so a child of a big pytest process reports the
    parent's peak."""
    try:
        return _status()["VmHWM"]
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _status() -> dict[str, float]:
    """/proc/self/status memory lines in MiB (VmHWM, VmRSS, RssAnon, RssFile, RssShmem)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) / 1024
    return out


class _Sampler:
    """Samples RssAnon / RssFile every millisecond on a thread: the largest resident set seen and its split, and each
    part's own peak (a pipeline that holds the GIL in one C call for long, as json.load does, is sampled less)."""

    def __init__(self) -> None:
        self.peak = {"rss": 0.0, "anon_at_peak": 0.0, "file_at_peak": 0.0, "anon": 0.0, "file": 0.0}
        self._stop = False
        self._thread = None

    def __enter__(self):
        import threading

        try:
            _status()
        except OSError:
            return self
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        p = self.peak
        while not self._stop:
            s = _status()
            p["anon"], p["file"] = max(p["anon"], s["RssAnon"]), max(p["file"], s["RssFile"])
            if s["VmRSS"] > p["rss"]:
                p["rss"], p["anon_at_peak"], p["file_at_peak"] = s["VmRSS"], s["RssAnon"], s["RssFile"]
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()


if __name__ == "__main__":
    if sys.argv[1] == "write":
        print(*write_workload(WORKLOADS[sys.argv[2]]))
        sys.exit()
    which, root, pred, dataset = sys.argv[1:5]
    with _Sampler() as sampler:
        t0 = time.perf_counter()
        if which == "official":
            metrics = official_pipeline(Path(root), Path(pred), dataset)
        else:
            metrics = uasan_pipeline(Path(root), Path(pred), dataset, "all" if which == "uasan_all" else "used")
        seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "peak_mib": peak_rss_mib(),
           "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           **{f"sampled_{k}_mib": v for k, v in sampler.peak.items()}, "metrics": metrics}  # fmt: skip
    print(json.dumps(out))
