"""Config: YAML loading, typed overrides, strict errors that name the key and the file, frozen dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from uasan.config import (
    BUILTIN_CONFIGS,
    TrainConfig,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
    resolve_config_path,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    n: int = 1
    xs: tuple[int, ...] = (1, 2)
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    maybe: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", BUILTIN_CONFIGS)
def test_builtin_configs_load(name):
    cfg = load_config(TrainConfig, name)
    assert cfg.data.dataset == name
    assert resolve_config_path(name).is_file()
    # Every key of the packaged file is set explicitly (no silent reliance on dataclass defaults).
    raw = yaml.safe_load(resolve_config_path(name).read_text())
    assert raw.keys() == to_dict(cfg).keys()
    for section, values in raw.items():
        assert values.keys() == to_dict(cfg)[section].keys(), section


def test_builtin_values():
    synth = load_config(TrainConfig, "synth")
    assert synth.model.d <= 128 and synth.model.L <= 8 and synth.optim.epochs_stage1 <= 3
    for name in ("vidvrd", "vidor"):
        m = load_config(TrainConfig, name).model
        assert (m.d, m.L, m.L_mot, m.L_rel, m.heads) == (512, 32, 2, 10, 8)
    for name in ("synth", "vidvrd", "vidor"):  # RePro's inference protocol (stage-2 cfg_.py, eval_relation_cls.py)
        i = load_config(TrainConfig, name).infer
        assert (i.pred_topk, i.topk_per_segment, i.triplet_score, i.association_topk) == (10, 200, "product", 200)
        assert (i.association_linkage, i.association_nms) == (0.5, 1.0)
    assert isinstance(synth.optim.lr, float)


def test_overrides_are_typed():
    cfg = load_config(
        TrainConfig,
        "synth",
        ["model.d=64", "optim.lr=0.01", "train.amp_bf16=false", "data.root=/data/x", "model.bridge_layers=null"],
    )
    assert cfg.model.d == 64 and type(cfg.model.d) is int
    assert cfg.optim.lr == 0.01 and type(cfg.optim.lr) is float
    assert cfg.train.amp_bf16 is False
    assert cfg.data.root == "/data/x"
    assert cfg.model.bridge_layers is None
    # YAML 1.1 reads "1e-4" as a string; a float field still takes it as the number it spells.
    assert load_config(TrainConfig, "synth", ["optim.lr=1e-4"]).optim.lr == 1e-4
    # An int is a fine float; the value becomes a float.
    assert type(load_config(TrainConfig, "synth", ["optim.lr=1"]).optim.lr) is float


def test_generic_types(tmp_path):
    path = write(tmp_path, {"inner": {"xs": [3, 4, 5]}, "weights": {"a": 1, "b": 0.5}})
    cfg = load_config(Outer, path, ["inner.mode=b", "maybe=hello", "flag=true", "inner.xs=[7]"])
    assert cfg.inner.xs == (7,) and cfg.inner.mode == "b" and cfg.maybe == "hello" and cfg.flag is True
    assert cfg.weights == {"a": 1.0, "b": 0.5}
    assert load_config(Outer, None) == Outer()
    assert load_config(Outer, write(tmp_path, None, "empty.yaml")) == Outer()


@pytest.mark.parametrize(
    "data, key",
    [
        ({"model": {"dd": 3}}, "model.dd"),
        ({"modle": {"d": 3}}, "modle"),
        ({"model": {"d": "big"}}, "model.d"),
        ({"model": {"d": 3.5}}, "model.d"),
        ({"model": {"d": True}}, "model.d"),  # a bool is not an int here
        ({"train": {"amp_bf16": 1}}, "train.amp_bf16"),
        ({"model": {"variant": "D"}}, "model.variant"),
        ({"infer": {"triplet_score": "max"}}, "infer.triplet_score"),
        ({"infer": {"pred_topk": 0}}, "infer.pred_topk"),
        ({"infer": {"association_linkage": 1.0}}, "infer.association_linkage"),
        ({"infer": {"association_nms": 0.0}}, "infer.association_nms"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"model": 3}, "model"),
        ({"model": {"d": 100, "heads": 8}}, "model.d"),  # __post_init__ check: d % heads
        ({"optim": {"lr": -1.0}}, "optim.lr"),
    ],
)
def test_file_errors_name_key_and_file(tmp_path, data, key):
    path = write(tmp_path, data)
    with pytest.raises(ValueError) as e:
        load_config(TrainConfig, path)
    assert f"{key}" in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [("model.dd=3", "model.dd"), ("model.d=3.5", "model.d"), ("train.seed=abc", "train.seed"), ("nope=1", "nope")],
)
def test_override_errors_name_key_and_override(override, key):
    with pytest.raises(ValueError) as e:
        load_config(TrainConfig, "synth", [override])
    msg = str(e.value)
    assert key in msg and override in msg and "synth.yaml" in msg


def test_bad_override_syntax_and_missing_file(tmp_path):
    for bad in ("model.d", "=3", "model..d=3"):
        with pytest.raises(ValueError, match="key.sub=value"):
            apply_overrides({}, [bad])
    with pytest.raises(ValueError, match="is a value"):
        apply_overrides({"model": 3}, ["model.d=1"])
    with pytest.raises(FileNotFoundError, match="synht"):
        load_config(TrainConfig, "synht")
    with pytest.raises(FileNotFoundError):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(TrainConfig, bad_yaml)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(TrainConfig, tmp_path / "list.yaml")


def test_apply_overrides_leaves_input_alone():
    base = {"a": {"b": 1}}
    out = apply_overrides(base, ["a.b=2", "a.c.d=[1, 2]"])
    assert base == {"a": {"b": 1}} and out == {"a": {"b": 2, "c": {"d": [1, 2]}}}


def test_frozen():
    cfg = load_config(TrainConfig, "synth")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.d = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = None  # type: ignore[misc]


def test_dump_roundtrip_atomic(tmp_path):
    cfg = load_config(TrainConfig, "vidvrd", ["optim.lr=3e-4", "model.variant=C", "data.root=/x"])
    path = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(TrainConfig, path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    outer = Outer(inner=Inner(xs=(9, 8)))
    dump_config(outer, tmp_path / "o.yaml")
    assert load_config(Outer, tmp_path / "o.yaml") == outer
