"""Frozen image models from local checkpoints: the vision tower that turns crops into features, and the optional
object detector. Everything model-specific of the extractor lives here; the engine only calls
``preprocess`` / ``encode`` (:class:`VisionTower`) and ``detect`` (:class:`ObjectDetector`).

Vision tower (``load_vision_tower(path)``): a transformers checkpoint folder with a ``config.json`` and the image
processor's ``preprocessor_config.json``:

* BLIP-2 (``model_type`` ``blip-2``, e.g. a local copy of ``Salesforce/blip2-itm-vit-g`` — the checkpoint the bridge
  loads — or any BLIP-2): its EVA ViT-g (``Blip2VisionModel``, 1408-d, 257 tokens at 224 px), the paper's encoder.
  Only the ``vision_model.*`` tensors are read, so the language model of a full BLIP-2 never enters memory.
* a vision-only BLIP-2 tower (``blip_2_vision_model``), CLIP (``clip`` / ``clip_vision_model``), or any vision
  model that ``AutoModel`` builds and that returns ``last_hidden_state`` and ``pooler_output``.

Weights are matched to the model by name, strictly: a checkpoint that does not hold every tensor of the tower is an
error (transformers would silently start those from random values). Per crop the tower gives the vector
``pool`` of (``"pooler"``: ``pooler_output``; ``"cls"``: ``last_hidden_state[:, 0]``; ``"mean"``: the mean token)
and, for ``tokens=True``, ``last_hidden_state`` (S, D) — what BLIP-2's Q-Former reads.

On CUDA the tower runs under ``torch.inference_mode`` and bf16 autocast; features come back as float32 on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["HFObjectDetector", "HFVisionTower", "ObjectDetector", "VisionTower", "load_detector", "load_vision_tower"]

POOLS = ("pooler", "cls", "mean")
_PREFIXES = ("", "vision_model.", "model.vision_model.", "vision_tower.", "model.vision_tower.")


class VisionTower(Protocol):
    """What the feature engine needs from an image encoder."""

    dim: int  # D
    num_tokens: int  # S
    fill: np.ndarray  # (3,) uint8: the colour that square padding uses

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """(h_i, w_i, 3) uint8 crops → (B, 3, H, W) float32 model input (CPU)."""
        ...

    def encode(self, pixels: torch.Tensor, tokens: bool) -> torch.Tensor:
        """(B, 3, H, W) → (B, D) vectors, or (B, S, D) tokens when ``tokens``; float32 on the CPU."""
        ...


class ObjectDetector(Protocol):
    """What the detect step needs from a detector."""

    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, list[Any]]]:
        """(H, W, 3) uint8 RGB frames → per frame (boxes (B, 4) x1 y1 x2 y2 pixels, scores (B,), labels (B,))."""
        ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` / None → this process's CUDA device (``LOCAL_RANK`` under torchrun) if there is one, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)


def _checkpoint_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ValueError(f"{p}: not a {what} checkpoint folder (no config.json; save one with save_pretrained)")
    return p


def _read_state(folder: Path, wanted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``wanted`` (the tower's own names) from the checkpoint files, under the first prefix that
    holds all of them. Reads only those tensors from safetensors files."""
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.is_file() or single.is_file():
        from safetensors import safe_open

        files = (
            sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
            if index.is_file()
            else [single]
        )
        names: dict[str, Path] = {}
        for f in files:
            with safe_open(f, framework="pt") as h:
                names.update(dict.fromkeys(h.keys(), f))
        prefix = _pick_prefix(folder, wanted, names)
        out: dict[str, torch.Tensor] = {}
        by_file: dict[Path, list[str]] = {}
        for k in wanted:
            by_file.setdefault(names[prefix + k], []).append(k)
        for f, keys in by_file.items():
            with safe_open(f, framework="pt") as h:
                for k in keys:
                    out[k] = h.get_tensor(prefix + k)
        return out
    binary = folder / "pytorch_model.bin"
    if not binary.is_file():
        raise ValueError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    state = torch.load(binary, map_location="cpu", weights_only=True, mmap=True)
    prefix = _pick_prefix(folder, wanted, state)
    return {k: state[prefix + k] for k in wanted}


def _pick_prefix(folder: Path, wanted: dict[str, Any], names: dict[str, Any]) -> str:
    for prefix in _PREFIXES:
        if all(prefix + k in names for k in wanted):
            return prefix
    missing = sorted(k for k in wanted if not any(p + k in names for p in _PREFIXES))
    raise ValueError(
        f"{folder}: the checkpoint does not hold the vision tower's weights (e.g. {missing[:3] or sorted(wanted)[:3]}, "
        f"looked for prefixes {list(_PREFIXES)})"
    )


def _build_vision_model(folder: Path) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(folder)
    vcfg = getattr(cfg, "vision_config", None) or cfg
    if vcfg.model_type == "blip_2_vision_model":
        from transformers import Blip2VisionModel

        return Blip2VisionModel(vcfg)
    if vcfg.model_type == "clip_vision_model":
        from transformers import CLIPVisionModel

        return CLIPVisionModel(vcfg)
    try:
        return AutoModel.from_config(vcfg)
    except ValueError as exc:
        raise ValueError(
            f"{folder}: model_type {vcfg.model_type!r} is not a vision tower transformers can build"
        ) from exc


class HFVisionTower:
    """A transformers vision encoder and its image processor, loaded from a local folder (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device | None = "auto", pool: str = "pooler"):
        from transformers import AutoImageProcessor

        if pool not in POOLS:
            raise ValueError(f"pool: expected one of {POOLS}, got {pool!r}")
        folder = _checkpoint_dir(path, "vision tower")
        if not (folder / "preprocessor_config.json").is_file():
            raise ValueError(f"{folder}: no preprocessor_config.json (the image processor of the vision tower)")
        self.path, self.pool, self.device = folder, pool, resolve_device(device)
        model = _build_vision_model(folder)
        state = _read_state(folder, model.state_dict())
        model.load_state_dict(state, strict=True)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.processor = AutoImageProcessor.from_pretrained(folder)
        mean = getattr(self.processor, "image_mean", None)
        self.fill = np.clip(np.rint(np.asarray(mean if mean is not None else [0, 0, 0], float) * 255), 0, 255).astype(
            np.uint8
        )
        probe = self.encode(self.preprocess([np.zeros((8, 8, 3), np.uint8)]), tokens=True)  # (1, S, D)
        self.num_tokens, self.dim = int(probe.shape[1]), int(probe.shape[2])

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        out = self.processor(images=list(crops), return_tensors="pt", input_data_format="channels_last")
        return out["pixel_values"].float()

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, tokens: bool) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        pixels = pixels.to(self.device, non_blocking=cuda)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = self.model(pixel_values=pixels)
        hidden = out.last_hidden_state  # (B, S, D)
        if tokens:
            res = hidden
        elif self.pool == "pooler":
            res = out.pooler_output  # (B, D)
        elif self.pool == "cls":
            res = hidden[:, 0]
        else:
            res = hidden.mean(1)
        return res.float().cpu()


def load_vision_tower(path: str | os.PathLike[str], device: str | torch.device | None = "auto", pool: str = "pooler"):
    """An :class:`HFVisionTower` from a local checkpoint folder."""
    return HFVisionTower(path, device=device, pool=pool)


class HFObjectDetector:
    """A transformers ``AutoModelForObjectDetection`` and its processor from a local folder.

    ``detect`` keeps, per frame, the detections the processor's ``post_process_object_detection`` returns above
    ``threshold``, at most ``max_per_frame`` by score; labels are the config's ``id2label`` names.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str | torch.device | None = "auto",
        threshold: float = 0.5,
        max_per_frame: int = 100,
    ):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        if max_per_frame < 1:
            raise ValueError(f"--det-max: expected >= 1 detections per frame, got {max_per_frame}")
        folder = _checkpoint_dir(path, "object detector")
        self.device = resolve_device(device)
        self.model = AutoModelForObjectDetection.from_pretrained(folder).eval().requires_grad_(False).to(self.device)
        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.threshold, self.max_per_frame = float(threshold), int(max_per_frame)
        self.id2label = dict(getattr(self.model.config, "id2label", {}) or {})

    @torch.inference_mode()
    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, list[Any]]]:
        if not frames:
            return []
        inputs = self.processor(images=list(frames), return_tensors="pt", input_data_format="channels_last")
        cuda = self.device.type == "cuda"
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = self.model(**inputs)
        for k, v in out.items():  # post-processing in float32 whatever autocast gave
            if torch.is_tensor(v) and v.is_floating_point():
                out[k] = v.float()
        sizes = [tuple(f.shape[:2]) for f in frames]
        res = self.processor.post_process_object_detection(out, threshold=self.threshold, target_sizes=sizes)
        per_frame = []
        for r, (h, w) in zip(res, sizes, strict=True):
            scores = r["scores"].float().cpu().numpy().astype(np.float64)
            order = np.argsort(-scores, kind="stable")[: self.max_per_frame]
            boxes = r["boxes"].float().cpu().numpy().astype(np.float64)[order].reshape(-1, 4)
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
            labels = [self.id2label.get(int(i), int(i)) for i in r["labels"].cpu().numpy()[order]]
            per_frame.append((boxes, scores[order], labels))
        return per_frame


def load_detector(
    path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    threshold: float = 0.5,
    max_per_frame: int = 100,
) -> HFObjectDetector:
    """An :class:`HFObjectDetector` from a local checkpoint folder."""
    return HFObjectDetector(path, device=device, threshold=threshold, max_per_frame=max_per_frame)
