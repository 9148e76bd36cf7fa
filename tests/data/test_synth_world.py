"""The synthetic world's modality gap, its simulated encoders, the pretraining corpus and the calibration tool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.data.conftest import SPLIT  # noqa: E402
from uasan.data import synth  # noqa: E402
from uasan.data.synth import calibrate as cal  # noqa: E402
from uasan.data.synth.encoders import VisionEncoder, distractor_concepts  # noqa: E402


def _load(path: Path):
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------------
# The simulated vision encoder
# ---------------------------------------------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_vision_encoder_rows_do_not_depend_on_the_batch(rng: np.random.Generator) -> None:
    enc = VisionEncoder(seed=5, text_dim=16, visual_dim=24, hidden=32, omega=3.0, identity_share=0.4)
    m = _unit_rows(rng.standard_normal((131, 16)))  # more than two chunks, not a multiple of the chunk
    names = [f"p{i}" for i in range(len(m))]
    all_rows = enc(names, m)
    assert all_rows.shape == (131, 24) and np.isfinite(all_rows).all()
    for i in (0, 63, 64, 130):
        assert np.array_equal(enc(names[i : i + 1], m[i : i + 1])[0], all_rows[i])
    again = VisionEncoder(seed=5, text_dim=16, visual_dim=24, hidden=32, omega=3.0, identity_share=0.4)
    assert np.array_equal(again(names, m), all_rows)  # fixed by the seed
    other = VisionEncoder(seed=6, text_dim=16, visual_dim=24, hidden=32, omega=3.0, identity_share=0.4)
    assert not np.allclose(other(names, m), all_rows)
    assert enc([], np.zeros((0, 16))).shape == (0, 24)


def test_vision_encoder_frequency_and_identity_share(rng: np.random.Generator) -> None:
    """The meaning part's correlation follows exp(-omega² (1 - cos)); the identity part is per phrase and carries
    nothing between phrases."""
    m = _unit_rows(rng.standard_normal((400, 32)))
    near = _unit_rows(m + 0.25 * _unit_rows(rng.standard_normal((400, 32))))  # cos ≈ 0.97
    cos = (m * near).sum(1)
    for omega in (1.0, 4.0):
        enc = VisionEncoder(seed=1, text_dim=32, visual_dim=512, hidden=4096, omega=omega, identity_share=0.0)
        corr = (enc.meaning(m) * enc.meaning(near)).sum(1)
        expected = np.exp(-(omega**2) * (1 - cos))
        assert abs(float(corr.mean()) - float(expected.mean())) < 0.06, (omega, corr.mean(), expected.mean())
    ident = VisionEncoder(seed=1, text_dim=32, visual_dim=512, hidden=64, omega=1.0, identity_share=1.0)
    names = [f"w{i}" for i in range(400)]
    a, b = ident(names, m), ident(names, near)
    assert np.allclose(a, b)  # identity only: the phrase, not its meaning
    assert abs(float((a[:200] * a[200:]).sum(1).mean())) < 0.02  # different phrases: unrelated
    with pytest.raises(ValueError, match="identity_share"):
        VisionEncoder(seed=1, text_dim=4, visual_dim=4, hidden=4, omega=1.0, identity_share=1.5)
    with pytest.raises(ValueError, match="omega"):
        VisionEncoder(seed=1, text_dim=4, visual_dim=4, hidden=4, omega=0.0, identity_share=0.5)


def test_distractor_words_do_not_depend_on_how_many() -> None:
    enc = synth.get_text_encoder("auto")
    words, emb = distractor_concepts(enc, 70, exclude=["dog"])
    more, emb_more = distractor_concepts(enc, 150, exclude=["dog"])
    assert more[:70] == words and np.array_equal(emb_more[:70], emb)
    assert len(set(more)) == 150 and "dog" not in more and all(w.isalpha() and len(w) >= 3 for w in more)
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=2e-3)
    assert distractor_concepts(enc, 0)[0] == []
    with pytest.raises(ValueError, match="n >= 0"):
        distractor_concepts(enc, -1)


# ---------------------------------------------------------------------------------------------------------------
# The modality gap (issue 8): raw features classified by the text model are at chance
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world384(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.generate(
        tmp_path_factory.mktemp("gap") / "w", videos=16, seed=0, size="tiny", split=SPLIT, progress=False,
        visual_dim=384, write_pretrain=False,
    )  # fmt: skip


def _zero_shot(x: np.ndarray, labels: list[list[int]], text: np.ndarray) -> dict[str, float]:
    """R@1, R@5 and the mean normalised rank of the truth (0 best, ½ chance) of cosine zero-shot classification."""
    s = _unit_rows(x.astype(np.float64)) @ _unit_rows(text.astype(np.float64)).T
    order = np.argsort(-s, axis=1, kind="stable")
    pos = [np.flatnonzero(np.isin(o, ls)) for o, ls in zip(order, labels, strict=True)]  # where the truth ranks
    ranks = [float(p.mean()) / (len(text) - 1) for p in pos]
    return {"R@1": cal.recall_at(s, labels, 1), "R@5": cal.recall_at(s, labels, 5), "rank": float(np.mean(ranks))}


def test_raw_features_are_at_chance_against_the_text_model(world384: Path) -> None:
    """Union features vs the text model's predicate embeddings (novel predicates) and trajectory features vs
    category embeddings (novel objects), on every subset: at most 1.5× the random R@k and a mean rank near ½. The
    same classifier on text-space features (the old world's e(label) + noise) is far above chance, so the check
    can fail."""
    split = _load(world384 / "splits.json")
    enc = synth.get_text_encoder(_load(world384 / "meta.json")["text_encoder"]["name"])
    objects = split["objects"]["base"] + split["objects"]["novel"]
    predicates = split["predicates"]["base"] + split["predicates"]["novel"]
    nb_o, nb_p = len(split["objects"]["base"]), len(split["predicates"]["base"])
    text_o = enc.many([synth.category_phrase(c) for c in objects])[nb_o:]
    text_p = enc.many([synth.predicate_phrase(p) for p in predicates])[nb_p:]
    gen = np.random.default_rng(0)
    for kind, src, text, first in (("objects", "objects", text_o, nb_o), ("predicates", "union", text_p, nb_p)):
        rows = {s: cal.load_samples(world384, s, objects, predicates)[src] for s in synth.SUBSETS}
        keep = list(range(first, first + len(text)))
        x = np.concatenate([cal._restrict(r, keep)[0] for r in rows.values()])
        labels = [ls for r in rows.values() for ls in cal._restrict(r, keep)[1]]
        assert x.shape[1] == 384 and len(labels) >= 50, (kind, len(labels))
        got = _zero_shot(x, labels, text)
        chance = {"R@1": 1 / len(text), "R@5": 5 / len(text)}
        print(kind, len(labels), "rows", got, chance)
        assert got["R@1"] <= 1.5 * chance["R@1"] + 1e-9 and got["R@5"] <= 1.5 * chance["R@5"]
        assert 0.4 <= got["rank"] <= 0.6
        # positive control: features in the text space (label embedding + the same amount of noise) are found
        leaky = np.stack([text[ls[0]] for ls in labels]) + gen.standard_normal(x.shape) * 0.08
        control = _zero_shot(leaky, labels, text)
        assert control["R@1"] >= 3 * chance["R@1"] and control["rank"] < 0.2


# ---------------------------------------------------------------------------------------------------------------
# The pretraining corpus
# ---------------------------------------------------------------------------------------------------------------


def test_corpus_format_and_composition(synth_world: Path) -> None:
    meta = _load(synth_world / "meta.json")
    corpus = synth.read_corpus(synth_world)
    S, D = meta["tokens"], meta["dim"]
    assert corpus.features.dtype == np.float16 and corpus.features.shape == (len(corpus), S, D)
    assert np.isfinite(corpus.features).all()
    assert corpus.caption_ids.dtype == np.int32 and corpus.kinds.dtype == np.int8
    assert corpus.caption_embeddings.shape == (len(corpus.captions), 384)
    assert np.allclose(np.linalg.norm(corpus.caption_embeddings.astype(np.float32), axis=1), 1, atol=5e-3)
    assert len(set(corpus.captions)) == len(corpus.captions)
    assert meta["pretrain"]["items"] == len(corpus) and meta["pretrain"]["captions"] == len(corpus.captions)
    rel = corpus.kinds == 1
    cfg = meta["pretrain"]["config"]
    assert 0 < rel.mean() < 0.5 and abs(rel.mean() - cfg["relation_fraction"]) < 0.02  # mostly objects
    captions = np.array(corpus.captions)[corpus.caption_ids]
    split = _load(synth_world / "splits.json")
    # every world phrase, novel ones included, is in the corpus (web data contains every word) ...
    concepts = set(captions[~rel])
    for c in split["objects"]["base"] + split["objects"]["novel"]:
        assert synth.category_phrase(c) in concepts, c
    rel_text = " | ".join(sorted(set(captions[rel])))
    for p in split["predicates"]["novel"]:
        assert f" {synth.predicate_phrase(p)} " in rel_text, p
    assert len(concepts) >= cfg["distractors"]
    # ... and no task data: nothing in the corpus names a video, a box or a tid
    assert not any("SYNTH_" in c for c in corpus.captions)
    with pytest.raises(ValueError, match="does not exist"):
        synth.read_corpus(synth_world / "train")


def test_corpus_reader_names_a_bad_file(synth_world: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "pretrain"
    shutil.copytree(synth_world / "pretrain", bad)
    np.save(bad / "kinds.npy", np.zeros(3, np.int8))
    with pytest.raises(ValueError, match="kinds.npy"):
        synth.read_corpus(bad)
    (bad / "captions.json").write_text("{}")
    with pytest.raises(ValueError, match="captions.json"):
        synth.read_corpus(bad)


# ---------------------------------------------------------------------------------------------------------------
# The calibration tool
# ---------------------------------------------------------------------------------------------------------------


def test_calibrate_tool_runs_and_is_sane(synth_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quick = cal.ProbeConfig(hidden=64, steps=60, corpus_steps=60, corpus_batch=256)
    res = cal.calibrate(synth_world, seed=0, cfg=quick, progress=False)
    assert set(res["rows"]) == set(cal.ROWS) and res["visual_dim"] == 1408 and res["subset"] == "val"
    for col, chance in res["chance"].items():
        assert res["rows"]["random"][col] == chance
        assert res["rows"]["raw zero-shot"][col] is None  # D_v ≠ 384: not defined
        assert res["counts"][col]["rows"] > 0
        for row in ("base-label probe", "corpus probe"):
            assert all(0.0 <= v <= 1.0 for v in res["rows"][row][col].values())
    assert res["rows"]["base-label probe on [s; o]"]["objects/novel"] is None
    assert res["chance"]["objects/novel"] == {"top1": 0.1, "top5": 0.5}
    # base labels teach base objects; the corpus teaches novel objects better than base labels do
    assert res["rows"]["base-label probe"]["objects/base"]["top1"] > 3 * res["chance"]["objects/base"]["top1"]
    rows = res["rows"]
    assert rows["corpus probe"]["objects/novel"]["top1"] > rows["base-label probe"]["objects/novel"]["top1"]
    # the union carries predicate information that the subject and object features lack
    assert (
        rows["base-label probe"]["predicates/base"]["R@1"]
        > 2 * rows["base-label probe on [s; o]"]["predicates/base"]["R@1"]
    )
    table = cal.format_table(res)
    assert table.count("\n|") >= len(cal.ROWS) + 1 and "n/a" in table
    assert cal.main([str(synth_world / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="subset to be 'val' or 'test'"):
        cal.calibrate(synth_world, subset="train")
