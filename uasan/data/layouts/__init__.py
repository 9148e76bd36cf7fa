"""Data layouts: where a data set keeps its segment trajectories and features, read as each source publishes them.

``data.layout`` picks one (``auto`` detects it from the folders):

* ``uasan`` (:mod:`.native`): this package's tree, ``ROOT/<kind>/<subset>/<vid>/<tag>.{json,npy}``.
* ``repro`` (:mod:`.repro`): RePro's release — flat per-segment folders for VidVRD, per-video files for VidOR.
* ``uasan-public`` (:mod:`.uasan_public`): UASAN's release (VidVRD): RePro's trajectories with EVA ViT-g ``.pkl``
  features and segment-level union features.

``data.<kind>`` (``proposals``, ``features``, ``union_features`` and the ``gt_`` variants) may point anywhere: one
folder or a list of folders searched in order (RePro ships train and test ground truth in separate folders);
unset, a kind is looked for under the data root by the layout's published folder names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from uasan.data.annotations import SubsetVideos
from uasan.data.layouts.base import EXTRACT_COMMAND, KINDS, MODE_KINDS, ROLES, Layout, SegmentKey
from uasan.data.layouts.native import UasanLayout
from uasan.data.layouts.repro import ReproVidORLayout, ReproVidVRDLayout
from uasan.data.layouts.uasan_public import UasanPublicLayout

LAYOUTS = ("uasan", "repro", "uasan-public")
_CLASSES: dict[tuple[str, str], type[Layout]] = {
    ("uasan", "vidvrd"): UasanLayout,
    ("uasan", "vidor"): UasanLayout,
    ("repro", "vidvrd"): ReproVidVRDLayout,
    ("repro", "vidor"): ReproVidORLayout,
    ("uasan-public", "vidvrd"): UasanPublicLayout,
}
PathSpec = str | os.PathLike | Sequence[str | os.PathLike] | None

__all__ = [
    "EXTRACT_COMMAND",
    "KINDS",
    "LAYOUTS",
    "Layout",
    "SegmentKey",
    "detect_layout",
    "layout_class",
    "open_layout",
]


def layout_class(name: str, dataset: str) -> type[Layout]:
    """The class reading layout ``name`` for ``dataset``; ``ValueError`` for an unknown or unsupported pair."""
    if name not in LAYOUTS:
        raise ValueError(f"data.layout: expected one of {('auto', *LAYOUTS)}, got {name!r}")
    if (name, dataset) not in _CLASSES:
        raise ValueError(
            f"data.layout: {name!r} has no {dataset} release (UASAN's code and configs cover VidVRD only); "
            "use the repro or uasan layout"
        )
    return _CLASSES[(name, dataset)]


def explicit_folders(paths: Mapping[str, PathSpec] | None) -> dict[str, tuple[Path, ...]]:
    """``data.<kind>`` settings as folders: a path or a list of paths each; every one must be a directory."""
    out: dict[str, tuple[Path, ...]] = {}
    for kind, spec in (paths or {}).items():
        if spec is None:
            continue
        if kind not in (*KINDS, "video2seg"):
            raise ValueError(f"data: unknown path kind {kind!r}; expected one of {(*KINDS, 'video2seg')}")
        items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
        if not items:
            raise ValueError(f"data.{kind}: an empty list; give a folder, a list of folders, or null")
        resolved = []
        for item in items:
            p = Path(item).expanduser()
            ok = p.is_file() if kind == "video2seg" else p.is_dir()
            if not ok:
                raise ValueError(f"data.{kind}: {p} is not {'a file' if kind == 'video2seg' else 'a directory'}")
            resolved.append(p)
        out[kind] = tuple(resolved)
    return out


def detect_layout(root: Path, dataset: str, paths: Mapping[str, PathSpec] | None = None) -> str:
    """The layout of ``root`` (and the ``data.<kind>`` folders): the one layout whose marks are found.

    ``ValueError`` naming what was found when no layout or more than one matches.
    """
    root = Path(root)
    explicit = explicit_folders(paths)
    hits = {}
    for name in LAYOUTS:
        cls = _CLASSES.get((name, dataset))
        if cls is not None and (desc := cls.probe(root, dataset, explicit)):
            hits[name] = desc
    if len(hits) == 1:
        return next(iter(hits))
    if hits:
        found = "; ".join(f"{k}: {v}" for k, v in hits.items())
        raise ValueError(f"data.layout: {root} matches several layouts ({found}); set data.layout to one of them")
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    shown = ", ".join(entries[:12]) + (f", … ({len(entries)} entries)" if len(entries) > 12 else "")
    given = ", ".join(f"data.{k}={', '.join(map(str, v))}" for k, v in explicit.items())
    raise ValueError(
        f"data.layout: no known layout under {root} (found: {shown or 'nothing'}"
        f"{'; ' + given if given else ''}). Expected uasan (ROOT/proposals/<subset>/<vid>/<tag>.json), repro "
        "(RePro's VidVRD_segment30_tracking_results/<tag>.json with VidVRD_traj_features_seg30/<tag>.npy, or VidOR "
        "…VideoLevel_tracking_results…/<group>_<vid>.json with …_traj_features…/<group>_<vid>_traj_features.npy) or "
        "uasan-public (the same trajectories with vit/VidVRD_traj_features_seg30/<tag>.pkl); set data.layout and "
        "data.proposals / data.features to the folders you downloaded"
    )


def open_layout(
    root: Path,
    videos: SubsetVideos,
    mode: str,
    layout: str = "auto",
    paths: Mapping[str, PathSpec] | None = None,
    *,
    features: bool = True,
    union_features: bool = True,
    union_segment_mean: bool = False,
) -> Layout:
    """The layout reading ``videos`` in ``mode``; checks at once that every folder the run needs is there.

    A missing proposal or feature folder, and union features a layout does not have, are a ``ValueError`` naming the
    ``data.<kind>`` setting (for union features also the extraction command), before any segment is read.
    """
    if mode not in MODE_KINDS:
        raise ValueError(f"expected mode in {tuple(MODE_KINDS)}, got {mode!r}")
    root = Path(root)
    name = detect_layout(root, videos.dataset, paths) if layout == "auto" else layout
    cls = layout_class(name, videos.dataset)
    explicit = explicit_folders(paths)
    folders: dict[str, tuple[Path, ...]] = {}
    for role, kind in zip(ROLES, MODE_KINDS[mode], strict=True):
        if kind in explicit:
            folders[role] = explicit[kind]
        else:
            folders[role] = tuple(d for d in cls.default_folders(root, videos.dataset, kind) if d.is_dir())
    obj = cls(
        root,
        videos,
        mode,
        folders,
        union_segment_mean=union_segment_mean,
        options={"video2seg": explicit.get("video2seg", ())},
    )
    needed = {"proposals": True, "features": features}
    for role, need in needed.items():
        if need and not folders[role]:
            kind = obj.kinds[role]
            tried = ", ".join(map(str, cls.default_folders(root, videos.dataset, kind)))
            raise ValueError(
                f"data.{kind}: no {name}-layout folder for {kind} (looked for {tried}); point data.{kind} at the "
                "folder you downloaded"
            )
    obj.check()
    if union_features:
        obj.check_union()
    return obj
