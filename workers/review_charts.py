"""Inline SVG charts for the review dashboard (no JavaScript, no plotting library).

Every number placed in the SVG is formatted by this module; text (version names)
is XML-escaped, so the markup is safe to insert into a page as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from schemas.events import ModelDecision
from workers.review_state import VersionScore

WIDTH, HEIGHT, PAD = 640, 220, 36


def labels_chart(per_hour: Sequence[int]) -> Markup:
    """Bars: labels given in each of the last hours (oldest left)."""
    top = max([*per_hour, 1])
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(len(per_hour), 1)
    parts = [_frame("labels per hour, last 24 h (now at the right)")]
    for index, count in enumerate(per_hour):
        height = inner_h * count / top
        x = PAD + index * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{height:.1f}" class="bar"><title>{count} labels</title></rect>'
        )
    parts.append(_y_axis(0, top, integer=True))
    return _svg(parts)


def accuracy_chart(scores: Sequence[VersionScore], decisions: Sequence[ModelDecision]) -> Markup:
    """Holdout leaf accuracy per model version: as served (random-sample labels against the
    version's top candidate) and as ``catstream retrain`` measured it (champion, challenger)."""
    versions: list[str] = sorted(
        {s.version for s in scores}
        | {str(d.challenger_version) for d in decisions}
        | {str(d.champion_version) for d in decisions if d.champion_version is not None},
        key=lambda v: (int(v), v) if v.isdigit() else (1 << 30, v),
    )
    parts = [_frame("holdout leaf accuracy per model version")]
    if not versions:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="note">'
            "no holdout labels yet: label random samples, or run catstream retrain</text>"
        )
        return _svg(parts)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / len(versions)

    def x_of(version: str) -> float:
        return PAD + (versions.index(version) + 0.5) * step

    def y_of(value: float) -> float:
        return HEIGHT - PAD - inner_h * min(max(value, 0.0), 1.0)

    served = [(s.version, s.accuracy, s.total) for s in scores if s.accuracy is not None]
    if len(served) > 1:
        points = " ".join(f"{x_of(v):.1f},{y_of(a):.1f}" for v, a, _ in served if a is not None)
        parts.append(f'<polyline points="{points}" class="line"/>')
    for version, value, total in served:
        assert value is not None
        parts.append(
            f'<circle cx="{x_of(version):.1f}" cy="{y_of(value):.1f}" r="4" class="served">'
            f"<title>version {escape(version)}: {value:.3f} on {total} holdout labels "
            "(as served)</title></circle>"
        )
    for decision in decisions:
        challenger = str(decision.challenger_version)
        parts.append(
            f'<rect x="{x_of(challenger) - 4:.1f}" y="{y_of(decision.challenger_score) - 4:.1f}" '
            f'width="8" height="8" class="retrain {decision.decision}"><title>version '
            f"{challenger}: {decision.challenger_score:.3f} at retrain ({decision.decision})"
            "</title></rect>"
        )
    for version in versions:
        parts.append(
            f'<text x="{x_of(version):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" '
            f'class="tick">v{escape(version)}</text>'
        )
    parts.append(_y_axis(0.0, 1.0, integer=False))
    return _svg(parts)


def _frame(title: str) -> str:
    return (
        f'<text x="{PAD}" y="18" class="title">{escape(title)}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
    )


def _y_axis(low: float, high: float, *, integer: bool) -> str:
    inner_h = HEIGHT - 2 * PAD
    marks = []
    for share in (0.0, 0.5, 1.0):
        value = low + (high - low) * share
        text = f"{value:.0f}" if integer else f"{value:.1f}"
        y = HEIGHT - PAD - inner_h * share
        marks.append(
            f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{text}</text>'
        )
    return "".join(marks)


def _svg(parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="chart">{body}</svg>'
    )
