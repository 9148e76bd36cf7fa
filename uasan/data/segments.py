"""Video segments: 30 frames with a stride of 15, and their tags ``f"{vid}-{fstart:04d}-{fend:04d}"``."""

from __future__ import annotations

SEGMENT_LENGTH = 30
SEGMENT_STRIDE = 15


def segments(frame_count: int, length: int = SEGMENT_LENGTH, stride: int = SEGMENT_STRIDE) -> list[tuple[int, int]]:
    """Segments of a video: ``[(i, i + length) for i in range(0, frame_count - length + 1, stride)]``.

    End frames are exclusive. A video shorter than ``length`` has no segment (the field's convention).
    """
    if frame_count < 0 or length <= 0 or stride <= 0:
        raise ValueError(
            f"segments: expected frame_count >= 0 and length, stride > 0, got {frame_count}, {length}, {stride}"
        )
    return [(i, i + length) for i in range(0, frame_count - length + 1, stride)]


def segment_tag(vid: str, fstart: int, fend: int) -> str:
    """The tag of segment ``[fstart, fend)`` of video ``vid``: ``f"{vid}-{fstart:04d}-{fend:04d}"``."""
    return f"{vid}-{int(fstart):04d}-{int(fend):04d}"


def parse_segment_tag(tag: str) -> tuple[str, int, int]:
    """Inverse of :func:`segment_tag`: ``"vid-0015-0045"`` → ``("vid", 15, 45)``; ``ValueError`` if malformed."""
    parts = tag.rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"expected a segment tag '<vid>-<fstart:04d>-<fend:04d>', got {tag!r}")
    vid, fs, fe = parts[0], int(parts[1]), int(parts[2])
    if fe <= fs:
        raise ValueError(f"expected a segment tag with fend > fstart, got {tag!r}")
    return vid, fs, fe
