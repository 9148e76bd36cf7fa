"""Writes the world: per video its annotation, segment proposals and features; the split, the pretraining corpus
and ``meta.json`` (written last: a root with ``meta.json`` is complete)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from uasan import ops
from uasan.data.segments import SEGMENT_LENGTH, SEGMENT_STRIDE, segment_tag, segments
from uasan.data.synth.corpus import CorpusConfig, make_corpus, write_corpus
from uasan.data.synth.detect import MIN_PROPOSAL_BOXES, MIN_PROPOSAL_SIZE, detect, propose
from uasan.data.synth.encoders import VisionEncoder, get_text_encoder, resolve_text_encoder
from uasan.data.synth.features import ConceptTable, FeatureConfig, FeatureMaker
from uasan.data.synth.scene import SIZES, SynthSize, Track, clip_boxes, relations, simulate
from uasan.data.synth.vocab import FPS, HEIGHT, WIDTH, Vocab, load_split, make_vocab

__all__ = ["FORMAT_VERSION", "SUBSETS", "generate"]

FORMAT_VERSION = 2  # 2: train/val/test, the simulated vision encoder, the pretraining corpus
SUBSETS = ("train", "val", "test")
_STREAM = {"train": 0, "test": 1, "val": 2}  # a video's random stream: (seed, _STREAM[subset], index)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode())


def _write_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    _write_bytes(path, buf.getvalue())


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd) + 0.0  # + 0.0 turns -0.0 into 0.0


def _boxes_json(b: np.ndarray) -> list[list[float]]:
    return [[_r(v) for v in row] for row in b]


def _video(
    out: Path,
    subset: str,
    index: int,
    seed: int,
    size: SynthSize,
    vocab: Vocab,
    table: ConceptTable,
    feat: FeatureConfig,
    tokens: int,
) -> tuple[dict[str, Any], list[str]]:
    """Generates and writes one video; returns its annotation and the predicates of its relation instances."""
    rng = np.random.default_rng([seed, _STREAM[subset], index])
    vid = f"SYNTH_{subset}_{index:05d}"
    for _ in range(20):
        frames, objs = simulate(rng, vocab, size)
        objs = [o for o in objs if o.end - o.start >= 10]
        if len(objs) >= 2:
            break
    tracks = []
    for tid, ob in enumerate(objs):
        b = np.rint(clip_boxes(ob.boxes[ob.start : ob.end])).astype(np.int64)
        tracks.append(Track(tid, ob.category, ob.start, ob.end, b, ob.actions[ob.start : ob.end]))
    instances, per_seg = relations(tracks, frames, vocab)
    trajectories: list[list[dict[str, Any]]] = [[] for _ in range(frames)]
    for tr in tracks:
        for t in range(tr.start, tr.end):
            x1, y1, x2, y2 = (int(v) for v in tr.boxes[t - tr.start])
            trajectories[t].append(
                {"tid": tr.tid, "bbox": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}, "generated": int(t % 10 != 0)}
            )
    ann = {
        "video_id": vid,
        "frame_count": frames,
        "fps": FPS,
        "width": WIDTH,
        "height": HEIGHT,
        "subject/objects": [{"tid": tr.tid, "category": tr.category} for tr in tracks],
        "trajectories": trajectories,
        "relation_instances": instances,
    }
    _write_json(out / subset / f"{vid}.json", ann)

    det = detect(rng, tracks, frames, vocab)
    fm = FeatureMaker(rng, table, vocab, feat, tokens, len(tracks))
    empty = np.zeros((0, tokens, feat.visual_dim), np.float32)
    for g, (fs, fe) in enumerate(segments(frames)):
        tag = segment_tag(vid, fs, fe)
        # ground-truth segment trajectories: every object present in the segment
        gts = [tr for tr in tracks if tr.start < fe and tr.end > fs]
        spans = [(max(fs, tr.start), min(fe, tr.end)) for tr in gts]
        gt_boxes = [
            tr.boxes[lo - tr.start : hi - tr.start].astype(np.float64) for tr, (lo, hi) in zip(gts, spans, strict=True)
        ]
        gt_json = [
            {"fstart": lo - fs, "score": -1.0, "bboxes": _boxes_json(b), "label": tr.category, "class": tr.category,
             "tid": tr.tid}
            for tr, (lo, _), b in zip(gts, spans, gt_boxes, strict=True)
        ]  # fmt: skip
        gt_sig = [fm.object_signal(tr.category, tr.tid, tr.actions[lo - tr.start : hi - tr.start])
                  for tr, (lo, hi) in zip(gts, spans, strict=True)]  # fmt: skip
        pairs = [(i, j) for i in range(len(gts)) for j in range(len(gts)) if i != j]
        gt_union_sig = [
            fm.union_signal(gts[i].category, gts[j].category, per_seg.get((g, gts[i].tid, gts[j].tid), []))
            for i, j in pairs
        ]

        props = propose(det, fs, fe, size.max_proposals)
        p_json = [
            {"fstart": p.fstart, "score": _r(p.score, 4), "bboxes": _boxes_json(p.boxes),
             "label": vocab.objects[p.label]}
            for p in props
        ]  # fmt: skip
        viou = np.zeros((len(props), len(gts)))
        if props and gts:
            gt_trajs = [(lo - fs, b) for (lo, _), b in zip(spans, gt_boxes, strict=True)]
            viou = np.asarray(ops.viou_matrix([(p.fstart, p.boxes) for p in props], gt_trajs), dtype=np.float64)
        match = viou.argmax(1) if gts else np.full(len(props), -1)
        quality = np.clip((viou.max(1) - 0.2) / 0.5, 0.0, 1.0) if gts else np.zeros(len(props))
        p_sig = []
        for k in range(len(props)):
            bg = fm.background_signal()
            q = float(quality[k])
            p_sig.append(q * gt_sig[match[k]] + (1 - q) * bg if q > 0 else bg)
        p_union_sig = []
        for a in range(len(props)):
            for b in range(len(props)):
                if a == b:
                    continue
                mix = fm.pair_mix(p_sig[a], p_sig[b])
                ma, mb = int(match[a]), int(match[b])
                q = min(float(quality[a]), float(quality[b]))
                if q > 0 and ma != mb:
                    p_union_sig.append(q * gt_union_sig[pairs.index((ma, mb))] + (1 - q) * mix)
                else:
                    p_union_sig.append(mix)

        _write_json(out / "gt_proposals" / subset / vid / f"{tag}.json", gt_json)
        _write_npy(out / "gt_features" / subset / vid / f"{tag}.npy", fm.tokens(np.stack(gt_sig)) if gts else empty)
        gu = fm.tokens(np.stack(gt_union_sig)) if pairs else empty
        _write_npy(out / "gt_union_features" / subset / vid / f"{tag}.npy", gu)
        _write_json(out / "proposals" / subset / vid / f"{tag}.json", p_json)
        _write_npy(out / "features" / subset / vid / f"{tag}.npy", fm.tokens(np.stack(p_sig)) if props else empty)
        pu = fm.tokens(np.stack(p_union_sig)) if p_union_sig else empty
        _write_npy(out / "union_features" / subset / vid / f"{tag}.npy", pu)
    return ann, [r["predicate"] for r in instances]


def subset_sizes(preset: SynthSize, videos: int | None, subsets: Mapping[str, int] | None = None) -> dict[str, int]:
    """Videos per subset: the preset's, or ``videos`` split train:val:test = 5:1:2 with at least one each; then
    ``subsets`` (e.g. ``{"test": 300}``) replaces the counts it names. Video k of a subset does not depend on the
    counts, so a larger test subset leaves the train and val videos as they were."""
    if videos is None:
        counts = {"train": preset.train, "val": preset.val, "test": preset.test}
    else:
        n_test = max(1, round(videos * 2 / 8))
        n_val = max(1, round(videos / 8))
        counts = {"train": videos - n_test - n_val, "val": n_val, "test": n_test}
    for name, n in (subsets or {}).items():
        if name not in counts:
            raise ValueError(f"generate: expected subsets among {sorted(counts)}, but got {name!r}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"generate: expected subsets[{name!r}] >= 1 videos, but got {n!r}")
        counts[name] = n
    return counts


def _settings(
    videos: int | None,
    subsets: Mapping[str, int] | None,
    size: str,
    tokens: int,
    visual_dim: int | None,
    features: FeatureConfig | None,
    pretrain: CorpusConfig | None,
) -> tuple[FeatureConfig, CorpusConfig, dict[str, int]]:
    """The checked generator settings: feature knobs, corpus composition, videos per subset."""
    if size not in SIZES:
        raise ValueError(f"generate: expected size in {sorted(SIZES)}, but got {size!r}")
    if videos is not None and videos < 3:
        raise ValueError(f"generate: expected videos >= 3 (one train, one val, one test), but got {videos}")
    if tokens < 1:
        raise ValueError(f"generate: expected tokens >= 1, but got {tokens}")
    feat = features if features is not None else FeatureConfig()
    if visual_dim is not None:
        if visual_dim < 1:
            raise ValueError(f"generate: expected visual_dim >= 1, but got {visual_dim}")
        feat = FeatureConfig(**{**feat.to_dict(), "visual_dim": int(visual_dim)})
    preset = SIZES[size]
    corpus_cfg = pretrain if pretrain is not None else CorpusConfig(distractors=preset.distractors)
    return feat, corpus_cfg, subset_sizes(preset, videos, subsets)


def generation_record(
    videos: int | None = None,
    seed: int = 0,
    size: str = "small",
    *,
    tokens: int = 4,
    text_encoder: str = "auto",
    visual_dim: int | None = None,
    features: FeatureConfig | None = None,
    pretrain: CorpusConfig | None = None,
    write_pretrain: bool = True,
    subsets: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """What defines the world :func:`generate` writes with these arguments (a subset of its ``meta.json``), computed
    without generating it: a world on disk may be reused only when :func:`world_differences` finds none."""
    feat, corpus_cfg, counts = _settings(videos, subsets, size, tokens, visual_dim, features, pretrain)
    return _record(seed, size, counts, tokens, feat, resolve_text_encoder(text_encoder), corpus_cfg, write_pretrain)


def _record(
    seed: int,
    size: str,
    counts: dict[str, int],
    tokens: int,
    feat: FeatureConfig,
    text_encoder: str,
    corpus_cfg: CorpusConfig,
    write_pretrain: bool,
) -> dict[str, Any]:
    """The fields of ``meta.json`` that define a world; :func:`generate` writes them, completed by the rest."""
    return {
        "generator": "uasan.data.synth",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "videos": counts,
        "tokens": tokens,
        "dim": feat.visual_dim,
        "text_encoder": {"name": text_encoder},
        "features": feat.to_dict(),
        "pretrain": {"config": corpus_cfg.to_dict()} if write_pretrain else None,
    }


def world_differences(root: str | os.PathLike[str], record: dict[str, Any]) -> list[str]:
    """``key: on disk -> wanted`` for every field of ``record`` (:func:`generation_record`) that ``ROOT/meta.json``
    does not match; ``["meta.json: ..."]`` when there is no readable one."""
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"meta.json: cannot read {path} ({exc})"]
    return _diff(meta, record, "")


def _diff(have: Any, want: Any, prefix: str) -> list[str]:
    if isinstance(want, dict) and isinstance(have, dict):
        return [d for k, v in want.items() for d in _diff(have.get(k), v, f"{prefix}{k}.")]
    if have != want:
        return [f"{prefix[:-1] or '(root)'}: {have!r} on disk, {want!r} wanted"]
    return []


def generate(
    out: str | os.PathLike[str],
    videos: int | None = None,
    seed: int = 0,
    size: str = "small",
    *,
    tokens: int = 4,
    text_encoder: str = "auto",
    split: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    progress: bool = True,
    visual_dim: int | None = None,
    features: FeatureConfig | None = None,
    pretrain: CorpusConfig | None = None,
    write_pretrain: bool = True,
    subsets: Mapping[str, int] | None = None,
) -> Path:
    """Writes the synthetic data set under ``out`` and returns ``out`` as a :class:`Path`.

    Args:
        out: the root folder (created; existing files of the same names are replaced atomically).
        videos: total number of videos, split train:val:test = 5:1:2 (at least one each). ``None``: the preset's.
        seed: the world's seed; the same seed (and arguments) gives byte-identical files, and video k of a subset
            does not depend on how many videos are made.
        size: a preset of :data:`SIZES` (``tiny``, ``small``, ``medium``, ``large``): videos per subset, frames
            per video, objects per video.
        tokens: S, feature tokens per trajectory, per pair and per corpus item.
        text_encoder: ``"auto"`` (MiniLM when installed, else hashed words), ``"minilm"`` or ``"hash"``.
        split: the category split (mapping or JSON path); ``None``: the packaged VidVRD split.
        progress: show a tqdm progress bar.
        visual_dim: D_v of the simulated vision encoder (overrides ``features.visual_dim``; default 1408).
        features: the encoder and feature-mix knobs (:class:`FeatureConfig`; default: the calibrated ones).
        pretrain: the corpus composition (:class:`CorpusConfig`; default: the calibrated one with the preset's
            number of distractor words).
        write_pretrain: write ``ROOT/pretrain`` (the corpus); ``False`` skips it (quick test worlds).
        subsets: videos of the subsets it names, e.g. ``{"test": 300}`` (the others as ``videos`` / the preset
            say); a subset's videos do not depend on the counts.
    """
    feat, corpus_cfg, counts = _settings(videos, subsets, size, tokens, visual_dim, features, pretrain)
    preset = SIZES[size]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    enc = get_text_encoder(text_encoder)
    split_data = load_split(split)
    vocab = make_vocab(split_data, enc)
    vision = VisionEncoder(seed, enc.dim, feat.visual_dim, feat.hidden, feat.omega, feat.identity_share)
    table = ConceptTable(enc, vision, vocab)

    obj_counts = {c: {"total": 0, **{s: 0 for s in SUBSETS}} for c in vocab.objects}
    pred_counts = {p: {"total": 0, **{s: 0 for s in SUBSETS}} for p in vocab.predicates}
    jobs = [(s, i) for s in SUBSETS for i in range(counts[s])]
    try:
        from tqdm import tqdm

        it: Any = tqdm(jobs, desc="synth", unit="video", disable=not progress)
    except ImportError:
        it = jobs
    for subset, i in it:
        ann, preds = _video(root, subset, i, seed, preset, vocab, table, feat, tokens)
        for ob in ann["subject/objects"]:
            obj_counts[ob["category"]][subset] += 1
            obj_counts[ob["category"]]["total"] += 1
        for p in preds:
            pred_counts[p][subset] += 1
            pred_counts[p]["total"] += 1

    pretrain_meta: dict[str, Any] | None = None
    if write_pretrain:
        corpus = make_corpus(seed, enc, table, vocab, feat, corpus_cfg, tokens)
        pretrain_meta = {**write_corpus(root / "pretrain", corpus, _write_bytes), "config": corpus_cfg.to_dict()}

    splits = {
        "dataset": "synth",
        "source": "uasan.data.synth: VidVRD's base/novel split (Gao et al., ICLR 2023); counts are this world's "
        "trajectories and relation instances",
        "objects": {"base": list(split_data["objects"]["base"]), "novel": list(split_data["objects"]["novel"])},
        "predicates": {
            "base": list(split_data["predicates"]["base"]),
            "novel": list(split_data["predicates"]["novel"]),
        },
        "object_counts": obj_counts,
        "predicate_counts": pred_counts,
    }
    _write_json(root / "splits.json", splits)
    meta = {
        **_record(seed, size, counts, tokens, feat, enc.name, corpus_cfg, write_pretrain),
        "frame_size": [WIDTH, HEIGHT],
        "fps": FPS,
        "segment": {"length": SEGMENT_LENGTH, "stride": SEGMENT_STRIDE},
        "proposal_filter": {"min_boxes": MIN_PROPOSAL_BOXES, "min_size": MIN_PROPOSAL_SIZE},
        "max_proposals": preset.max_proposals,
        "text_encoder": {"name": enc.name, "description": enc.description, "dim": enc.dim, "fallback": enc.fallback},
        "vision_encoder": vision.describe(),
        "feature_mix": {
            "trajectory": "v(category) + w_action v(action) + w_instance a_object + w_style s_video + noise",
            "union": "sum_k w_k v(predicate_k) / sum_k w_k + w_pair (v(subject) + v(object)) / 2 + w_style s_video "
            "+ noise (w_k = 1 primary, w_extra secondary)",
            "proposal": "blend of the matched ground truth's signal and a background mix by vIoU quality",
            "background": "0.6 v('background') + 0.5 v(random category) + w_instance a",
            "noise": "Gaussian per token, expected norm `noise`",
        },
        "pretrain": pretrain_meta,
    }
    _write_json(root / "meta.json", meta)
    return root
