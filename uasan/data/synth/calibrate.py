"""``python -m uasan.data.synth.calibrate ROOT``: how hard is this world? Probes on the VAL subset's ground truth.

For objects (ground-truth trajectories, features averaged over tokens) and predicates (ground-truth related pairs,
union features), each on the novel and on the base classes, it scores:

* ``random`` — chance: top-k accuracy k/C for objects, R@k = k/C for predicates (C = the split's classes).
* ``raw zero-shot`` — cosine of the raw features with the text model's phrase embeddings; defined only when the
  features have the text model's size (``visual_dim`` 384), else ``n/a``. The modality gap keeps it at chance.
* ``base-label probe`` — a small MLP from features to the text space (DeViSE-style: softmax over the cosines with
  the class phrases' embeddings / tau) trained on the TRAIN subset's base classes only, scored against the split's
  classes. What task labels of base classes teach about novel ones.
* ``corpus probe`` — the same MLP trained on the pretraining corpus only (``ROOT/pretrain``: contrastive over the
  captions of each batch), the stand-in for what stage 0 can achieve.
* ``base-label probe, shuffled rows`` — the base-label probe scored on the scored rows in a shuffled order: what the
  label prior alone gives (a probe trained on base labels ranks some novel classes high whatever it sees; the
  scored classes are not uniform). The base-label probe's transfer to novel classes is its excess over this row.
* ``base-label probe on [s; o]`` — the base-label predicate probe fed the concatenated subject and object features
  instead of the union features: the union carries predicate information that the pair's members lack.

Metrics that do not saturate: objects top-1 / top-5 accuracy over the split's classes, predicates R@1 / R@5 per
related pair over the split's predicates (the share of the pair's ground-truth predicates among the top k). Each
cell also gives its ratio to chance. Deterministic for a given ``--seed``. The scored subset (``--subset``, default
``val``: knobs of the world are chosen on it, never on the test videos) is only scored, never fitted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uasan.data.annotations import read_annotation
from uasan.data.segments import segment_tag, segments
from uasan.data.synth.corpus import read_corpus
from uasan.data.synth.encoders import get_text_encoder
from uasan.data.synth.vocab import category_phrase, predicate_phrase

__all__ = ["ProbeConfig", "calibrate", "format_table", "main"]

KS = (1, 5)
ROWS = (
    "random",
    "raw zero-shot",
    "base-label probe",
    "base-label probe, shuffled rows",
    "corpus probe",
    "base-label probe on [s; o]",
)
COLUMNS = (("objects", "novel"), ("objects", "base"), ("predicates", "novel"), ("predicates", "base"))


@dataclass(frozen=True)
class ProbeConfig:
    """The probe: Linear(D_in, hidden) → GELU → Linear(hidden, D_text); Adam; cosine logits / tau."""

    hidden: int = 256
    steps: int = 300
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    tau: float = 0.05
    corpus_steps: int = 400
    corpus_batch: int = 512


@dataclass
class _Samples:
    x: np.ndarray  # (n, D) features averaged over tokens
    labels: list[list[int]]  # per row, class ids into the full (base + novel) list


def _load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_samples(root: Path, subset: str, objects: list[str], predicates: list[str]) -> dict[str, _Samples]:
    """Ground-truth trajectories (``objects``), related pairs (``union`` and ``so`` = [subject; object]) of a subset."""
    obj_id = {c: i for i, c in enumerate(objects)}
    pred_id = {p: i for i, p in enumerate(predicates)}
    tx, ty, ux, sx, py = [], [], [], [], []
    for ann_path in sorted((root / subset).glob("*.json")):
        ann = read_annotation(ann_path)
        vid = ann.video_id
        for fs, fe in segments(ann.frame_count):
            tag = segment_tag(vid, fs, fe)
            gts = _load_json(root / "gt_proposals" / subset / vid / f"{tag}.json")
            if not gts:
                continue
            feats = np.load(root / "gt_features" / subset / vid / f"{tag}.npy").astype(np.float32).mean(1)  # (n, D)
            tx.append(feats)
            ty += [[obj_id[g["class"]]] for g in gts]
            n = len(gts)
            if n < 2:
                continue
            index, _ = ann.segment_relations(fs, fe)
            rel: dict[tuple[int, int], set[int]] = {}
            for k in index:
                r = ann.relations[int(k)]
                rel.setdefault((r.subject_tid, r.object_tid), set()).add(pred_id[r.predicate])
            union = np.load(root / "gt_union_features" / subset / vid / f"{tag}.npy").astype(np.float32).mean(1)
            row = 0
            for i in range(n):
                for j in range(n):
                    if i == j:
                        continue
                    preds = rel.get((gts[i]["tid"], gts[j]["tid"]))
                    if preds:
                        ux.append(union[row])
                        sx.append(np.concatenate([feats[i], feats[j]]))
                        py.append(sorted(preds))
                    row += 1
    D = tx[0].shape[1] if tx else 0
    return {
        "objects": _Samples(np.concatenate(tx) if tx else np.zeros((0, D), np.float32), ty),
        "union": _Samples(np.asarray(ux, np.float32).reshape(-1, D), py),
        "so": _Samples(np.asarray(sx, np.float32).reshape(-1, 2 * D), py),
    }


def _restrict(s: _Samples, keep: Sequence[int]) -> tuple[np.ndarray, list[list[int]]]:
    """Rows with at least one label in ``keep``; labels re-indexed into ``keep``."""
    pos = {c: k for k, c in enumerate(keep)}
    rows, labels = [], []
    for r, ls in enumerate(s.labels):
        mine = [pos[c] for c in ls if c in pos]
        if mine:
            rows.append(r)
            labels.append(mine)
    return s.x[rows], labels


def _scores(z: torch.Tensor, text: torch.Tensor) -> np.ndarray:
    return (torch.nn.functional.normalize(z, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T).numpy()


def recall_at(scores: np.ndarray, labels: list[list[int]], k: int) -> float:
    """Mean over rows of |top-k ∩ labels| / |labels| (top-k accuracy when each row has one label)."""
    if not labels:
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(t.tolist()) & set(ls)) / len(ls) for t, ls in zip(top, labels, strict=True)]))


class _Probe(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int, cfg: ProbeConfig, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean))
        self.register_buffer("std", torch.as_tensor(std))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d_in, cfg.hidden), torch.nn.GELU(), torch.nn.Linear(cfg.hidden, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _new_probe(x: np.ndarray, d_out: int, cfg: ProbeConfig, seed: int) -> _Probe:
    torch.manual_seed(seed)
    return _Probe(x.shape[1], d_out, cfg, x.mean(0), x.std(0) + 1e-6)


def fit_label_probe(x: np.ndarray, labels: list[list[int]], text: torch.Tensor, cfg: ProbeConfig, seed: int) -> _Probe:
    """DeViSE-style probe: softmax over cos(g(x), text_c) / tau, one term per (row, positive label)."""
    rows = np.array([r for r, ls in enumerate(labels) for _ in ls])
    ys = torch.as_tensor([c for ls in labels for c in ls])
    probe = _new_probe(x, text.shape[1], cfg, seed)
    opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    xt, tn = torch.as_tensor(x), torch.nn.functional.normalize(text, dim=-1)
    for _ in range(cfg.steps):
        b = torch.randint(len(rows), (min(cfg.batch, len(rows)),), generator=gen)
        z = torch.nn.functional.normalize(probe(xt[rows[b.numpy()]]), dim=-1)
        loss = torch.nn.functional.cross_entropy(z @ tn.T / cfg.tau, ys[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


def fit_corpus_probe(root: Path, d_text: int, cfg: ProbeConfig, seed: int) -> _Probe | None:
    """The same probe trained on the pretraining corpus: per batch, softmax over the batch's distinct captions."""
    if not (root / "pretrain").is_dir():
        return None
    corpus = read_corpus(root)
    x = corpus.features.astype(np.float32).mean(1)  # (N, D)
    emb = torch.nn.functional.normalize(torch.as_tensor(corpus.caption_embeddings.astype(np.float32)), dim=-1)
    ids = torch.as_tensor(corpus.caption_ids.astype(np.int64))
    probe = _new_probe(x, d_text, cfg, seed)
    opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x)
    for _ in range(cfg.corpus_steps):
        b = torch.randint(len(x), (min(cfg.corpus_batch, len(x)),), generator=gen)
        caps, target = torch.unique(ids[b], return_inverse=True)
        z = torch.nn.functional.normalize(probe(xt[b]), dim=-1)
        loss = torch.nn.functional.cross_entropy(z @ emb[caps].T / cfg.tau, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


def calibrate(
    root: str | Path, seed: int = 0, cfg: ProbeConfig | None = None, progress: bool = True, subset: str = "val"
) -> dict[str, Any]:
    """The calibration table of the world at ``root`` (see the module docstring), scored on ``subset`` (val or test).

    Returns ``{"rows": {row: {"objects/novel": {"top1"|"R@1": value, ...}, ...}}, "chance": {...}, "counts": {...},
    "seconds": float, "seed": seed, "visual_dim": D_v, "subset": subset}``; a cell is ``None`` where its row is not
    defined (raw zero-shot when D_v ≠ 384, the corpus probe without ``ROOT/pretrain``, [s; o] for objects). Torch runs
    on one thread here (restored afterwards): small matrices on a shared CPU go faster that way, and the bits are
    stable.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if subset not in ("val", "test"):
            raise ValueError(f"calibrate: expected subset to be 'val' or 'test', got {subset!r}")
        return _calibrate(Path(root), seed, cfg or ProbeConfig(), progress, subset)
    finally:
        torch.set_num_threads(threads)


def _calibrate(root: Path, seed: int, cfg: ProbeConfig, progress: bool, subset: str) -> dict[str, Any]:
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if progress:
            print(f"[calibrate {time.perf_counter() - t0:5.1f} s] {msg}", file=sys.stderr)

    meta, split = _load_json(root / "meta.json"), _load_json(root / "splits.json")
    enc = get_text_encoder(meta["text_encoder"]["name"])
    objects = list(split["objects"]["base"]) + list(split["objects"]["novel"])
    predicates = list(split["predicates"]["base"]) + list(split["predicates"]["novel"])
    nb_o, nb_p = len(split["objects"]["base"]), len(split["predicates"]["base"])
    text = {
        "objects": torch.as_tensor(enc.many([category_phrase(c) for c in objects])),
        "predicates": torch.as_tensor(enc.many([predicate_phrase(p) for p in predicates])),
    }
    ids = {
        ("objects", "base"): list(range(nb_o)),
        ("objects", "novel"): list(range(nb_o, len(objects))),
        ("predicates", "base"): list(range(nb_p)),
        ("predicates", "novel"): list(range(nb_p, len(predicates))),
    }
    test = load_samples(root, subset, objects, predicates)  # scored only
    train = load_samples(root, "train", objects, predicates)
    say(f"loaded {len(test['objects'].x)} {subset} trajectories and {len(test['union'].x)} {subset} related pairs")
    D = test["objects"].x.shape[1]

    base: dict[str, _Probe | None] = {}  # by input: objects, union, so
    for kind, src in (("objects", "objects"), ("predicates", "union"), ("predicates", "so")):
        x, labels = _restrict(train[src], ids[(kind, "base")])
        base[src] = fit_label_probe(x, labels, text[kind][ids[(kind, "base")]], cfg, seed) if labels else None
        say(f"fitted the base-label probe on {src} ({len(labels)} training rows)")
    corpus_probe = fit_corpus_probe(root, enc.dim, cfg, seed)
    say("fitted the corpus probe" if corpus_probe is not None else "no ROOT/pretrain: no corpus probe")

    metric = {"objects": "top", "predicates": "R@"}
    out: dict[str, Any] = {"rows": {r: {} for r in ROWS}, "chance": {}, "counts": {}}
    for kind, part in COLUMNS:
        col, cls = f"{kind}/{part}", ids[(kind, part)]
        names = [f"{metric[kind]}{k}" for k in KS]
        out["chance"][col] = {n: min(k / len(cls), 1.0) for n, k in zip(names, KS, strict=True)}
        out["rows"]["random"][col] = dict(out["chance"][col])
        src = "objects" if kind == "objects" else "union"
        x, labels = _restrict(test[src], cls)
        out["counts"][col] = {"rows": len(labels), "classes": len(cls)}
        shuffled = x[np.random.default_rng(seed).permutation(len(x))]
        so = _restrict(test["so"], cls)[0] if kind == "predicates" else None
        cells: dict[str, tuple[Any, np.ndarray | None]] = {
            "raw zero-shot": ((lambda q: q) if D == enc.dim else None, x),
            "base-label probe": (base[src], x),
            "base-label probe, shuffled rows": (base[src], shuffled),
            "corpus probe": (corpus_probe, x),
            "base-label probe on [s; o]": (base["so"], so),
        }
        for row, (fn, inputs) in cells.items():
            if fn is None or inputs is None or not labels:
                out["rows"][row][col] = None
                continue
            with torch.no_grad():
                s = _scores(fn(torch.as_tensor(inputs)), text[kind][cls])
            out["rows"][row][col] = {n: recall_at(s, labels, k) for n, k in zip(names, KS, strict=True)}
    out.update(seconds=time.perf_counter() - t0, seed=seed, visual_dim=D, subset=subset)
    return out


def format_table(res: dict[str, Any]) -> str:
    """Markdown: one row per probe, per column the two metrics with their ratio to chance."""
    head = ["probe"]
    for kind, part in COLUMNS:
        for k in KS:
            head.append(f"{'obj' if kind == 'objects' else 'pred'}. {part} {'top' if kind == 'objects' else 'R@'}{k}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        cells = [row]
        for kind, part in COLUMNS:
            col = f"{kind}/{part}"
            val = res["rows"][row].get(col)
            for n in res["chance"][col]:
                if val is None:
                    cells.append("n/a" if row == "raw zero-shot" or row == "corpus probe" else "–")
                else:
                    v, c = val[n], res["chance"][col][n]
                    cells.append(f"{100 * v:.1f} ({v / c:.1f}×)" if c > 0 and not math.isnan(v) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{c}: {v['rows']} rows / {v['classes']} classes" for c, v in res["counts"].items())
    tail = f"{res['subset'].capitalize()} subset: {counts}. Probe seed {res['seed']}, {res['seconds']:.0f} s."
    return "\n".join(lines) + f"\n\n{tail}\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m uasan.data.synth.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="a world written by python -m uasan.data.synth")
    ap.add_argument("--seed", type=int, default=0, help="the probes' seed")
    ap.add_argument("--subset", choices=("val", "test"), default="val", help="the subset scored (default val)")
    ap.add_argument("--json", help="also write the result as JSON here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not (root / "meta.json").is_file():
        print(f"calibrate: {root / 'meta.json'} does not exist (not a generated world)", file=sys.stderr)
        return 2
    res = calibrate(root, seed=args.seed, progress=not args.quiet, subset=args.subset)
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
