"""How spans are shown: the waterfall rows of a run and the parts of one span's detail.

Pure functions over Span rows; the views call them, the templates draw them.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from traces.models import Span
from traces.payloads import span_input, span_output

# A payload longer than this is not sent with the span: it is loaded when opened.
PART_INLINE_CHARS = 4000
# Kinds whose calls are retried: their attempts are nested under one row.
ATTEMPTED_KINDS = {Span.Kind.MODEL, Span.Kind.TOOL}


def duration_text(value: timedelta | float | None) -> str:
    """A duration as a person reads it: "350 ms", "2.4 s", "3 m 05 s", "2 h 03 m"."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else value / 1000
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@dataclass
class Row:
    """One bar of the waterfall: a span, or the group of a call's attempts."""

    kind: str
    kind_label: str
    name: str
    status: str
    error_class: str
    error_message: str
    step: int
    depth: int
    left: float  # % of the time axis
    width: float  # % of the time axis
    duration: str
    started_at: datetime
    ended: bool
    span: Span | None = None  # None for a group row
    attempt: int = 1
    attempts: int = 1  # how many attempts the call took (on every row of the group)
    children: int = 0


@dataclass(frozen=True)
class Tick:
    left: float
    label: str


def _attempt_key(span: Span) -> tuple:
    return (span.parent_span_id, span.kind, span.name, span.step)


def waterfall(spans: list[Span], *, now: datetime) -> tuple[list[Row], list[Tick]]:
    """Rows on one time axis, nested run → call → attempts, in start order."""
    if not spans:
        return [], []
    start = min(s.started_at for s in spans)
    end = max(s.ended_at or now for s in spans)
    total = max((end - start).total_seconds(), 0.001)

    def place(began: datetime, ended: datetime | None) -> tuple[float, float]:
        left = (began - start).total_seconds() / total * 100
        width = ((ended or now) - began).total_seconds() / total * 100
        return round(min(max(left, 0), 99.5), 3), round(max(width, 0.4), 3)

    groups: dict[tuple, list[Span]] = defaultdict(list)
    for span in spans:
        if span.kind in ATTEMPTED_KINDS:
            groups[_attempt_key(span)].append(span)

    depths: dict[str, int] = {}
    rows: list[Row] = []
    grouped: set[tuple] = set()
    for span in spans:
        depth = depths.get(span.parent_span_id, -1) + 1 if span.parent_span_id else 0
        depths[span.span_id] = depth
        members = groups.get(_attempt_key(span), [span]) if span.kind in ATTEMPTED_KINDS else [span]
        if len(members) > 1:
            key = _attempt_key(span)
            if key not in grouped:
                grouped.add(key)
                last = members[-1]
                ended = all(m.ended_at for m in members)
                group_end = max(m.ended_at or now for m in members)
                left, width = place(members[0].started_at, group_end)
                rows.append(
                    Row(
                        kind=span.kind,
                        kind_label=span.get_kind_display(),
                        name=span.name,
                        status=last.status,
                        error_class=last.error_class,
                        error_message="",
                        step=span.step,
                        depth=depth,
                        left=left,
                        width=width,
                        duration=duration_text(group_end - members[0].started_at)
                        if ended
                        else "running…",
                        started_at=members[0].started_at,
                        ended=ended,
                        attempts=len(members),
                        children=len(members),
                    )
                )
            depth += 1
        left, width = place(span.started_at, span.ended_at)
        rows.append(
            Row(
                kind=span.kind,
                kind_label=span.get_kind_display(),
                name=span.name,
                status=span.status,
                error_class=span.error_class,
                error_message=span.error_message,
                step=span.step,
                depth=min(depth, 4),
                left=left,
                width=width,
                duration=duration_text(span.duration_ms) if span.ended_at else "running…",
                started_at=span.started_at,
                ended=span.ended_at is not None,
                span=span,
                attempt=span.attempt,
                attempts=len(members),
            )
        )
    ticks = [
        Tick(left=f * 100, label=duration_text(total * f * 1000)) for f in (0, 0.25, 0.5, 0.75, 1)
    ]
    return rows, ticks


# --- one span's detail -----------------------------------------------------------------


@dataclass
class Part:
    """One payload of a span, shown as messages, blocks or JSON; big ones load on demand."""

    name: str  # input / output / attributes (the URL of the part)
    label: str
    value: Any
    shape: str = "json"  # "messages" (a conversation), "blocks" (content blocks), "json"
    chars: int = 0
    deferred: bool = False
    text: str = field(default="", repr=False)

    @property
    def messages(self) -> list[dict]:
        return [_message(m) for m in self.value.get("messages", [])]

    @property
    def blocks(self) -> list[dict]:
        return [_block(b) for b in self.value.get("content", [])]


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _block(block: Any) -> dict:
    """A content block with its JSON pre-rendered for the template."""
    if not isinstance(block, dict):
        return {"type": "text", "text": str(block)}
    shown = dict(block)
    if block.get("type") == "tool_use":
        shown["input_text"] = _pretty(block.get("input"))
    if block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            with contextlib.suppress(ValueError):
                content = json.loads(content)
        shown["content_text"] = _pretty(content)
    return shown


def _message(message: Any) -> dict:
    if not isinstance(message, dict):
        return {"role": "?", "blocks": [_block(message)]}
    content = message.get("content")
    blocks = [_block(content)] if isinstance(content, str) else [_block(b) for b in content or []]
    return {"role": message.get("role", "?"), "blocks": blocks}


PART_LABELS: dict[str, dict[str, str]] = {
    Span.Kind.MODEL: {"input": "Input messages", "output": "Output blocks"},
    Span.Kind.VALIDATE: {
        "input": "Arguments as the model sent them",
        "output": "As validated and resolved",
    },
    Span.Kind.TOOL: {"input": "Arguments sent to the tool", "output": "Raw tool response"},
    Span.Kind.POLICY: {"input": "Checked", "output": "Verdict"},
    Span.Kind.APPROVAL: {"input": "Asked", "output": "Decision"},
}


# How each part of a span is read: input and output with what they point at.
_READERS = {"input": span_input, "output": span_output, "attributes": attrgetter("attributes")}


def span_part(span: Span, name: str) -> Part | None:
    """The named payload of a span, or None when it is empty."""
    value = _READERS[name](span)
    if value in (None, "", {}, []):
        return None
    label = PART_LABELS.get(span.kind, {}).get(name, name.capitalize())
    if span.kind == Span.Kind.VALIDATE and name == "output" and span.error_class:
        label = "Why it was refused"
    shape = "json"
    if span.kind == Span.Kind.MODEL and isinstance(value, dict):
        if name == "input" and isinstance(value.get("messages"), list):
            shape = "messages"
        if name == "output" and isinstance(value.get("content"), list):
            shape = "blocks"
    text = _pretty(value)
    return Part(name=name, label=label, value=value, shape=shape, chars=len(text), text=text)


def span_parts(span: Span) -> list[Part]:
    parts = [span_part(span, name) for name in ("input", "output", "attributes")]
    for part in parts:
        if part is not None:
            part.deferred = part.chars > PART_INLINE_CHARS
    return [p for p in parts if p is not None]


def span_as_dict(span: Span) -> dict[str, Any]:
    """A span as JSON: what "copy" and the trace download give."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "step": span.step,
        "kind": span.kind,
        "name": span.name,
        "status": span.status,
        "error_class": span.error_class or None,
        "error_message": span.error_message or None,
        "attempt": span.attempt,
        "model": span.model or None,
        "started_at": span.started_at.isoformat(),
        "ended_at": span.ended_at.isoformat() if span.ended_at else None,
        "duration_ms": span.duration_ms,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cost": str(span.cost),
        "input": span_input(span),
        "output": span_output(span),
        "attributes": span.attributes,
    }
