"""Rendering an `objlib search` result: the answer (with [n] after each grounded sentence),
then the numbered citations — local path (and a PDF's page), metadata, the cited passage."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from objlib.search import Citation, SearchResult

PASSAGE_CHARS = 360
METADATA_SHOWN = ("category", "course", "lesson", "year", "quarter", "week", "topic", "series",
                  "date", "episode")
METADATA_HIDDEN = ("title",)  # the path says it; --json has it


def marked_answer(result: SearchResult) -> str:
    """The answer with ``[n]`` after each piece that a citation grounds."""
    text, position = result.answer, 0
    for piece, numbers in result.supports:
        at = text.find(piece, position) if piece and numbers else -1
        if at < 0:
            continue
        end = at + len(piece)
        marker = "".join(f"[{n}]" for n in numbers)
        text = f"{text[:end]} {marker}{text[end:]}"
        position = end + len(marker) + 1
    return text


def metadata_line(metadata: dict) -> str:
    shown = [k for k in METADATA_SHOWN if k in metadata]
    shown += sorted(k for k in metadata if k not in METADATA_SHOWN + METADATA_HIDDEN)
    return " · ".join(f"{k}: {_value(metadata[k])}" for k in shown)


def _value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def passage(text: str, focus: str = "", limit: int = PASSAGE_CHARS) -> str:
    """The passage on one line, at most ``limit`` characters: around ``focus`` (the
    sentence the answer took from it) when it is there, else from the start."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    at = flat.find(" ".join(focus.split())) if focus.strip() else -1
    start = max(0, min(at - limit // 4, len(flat) - limit)) if at > 0 else 0
    window = flat[start:start + limit - 2].strip()
    return ("…" if start else "") + window + ("…" if start + limit - 2 < len(flat) else "")


def citation_view(c: Citation, focus: str = "") -> Group:
    where = Text(f"[{c.number}] ", style="bold")
    if c.path:
        where.append(c.path, style="cyan")
        if c.page is not None:
            where.append(f", page {c.page}", style="cyan")
        if c.state and c.state != "indexed":
            where.append(f"  ({c.state} in the catalogue)", style="yellow")
    else:
        where.append(f"{c.title or 'a document'} (not in this catalogue)", style="yellow")
    lines: list[RenderableType] = [where]
    if c.metadata:
        lines.append(Padding(Text(metadata_line(c.metadata), style="dim"), (0, 0, 0, 4)))
    lines.append(Padding(Text(f"“{passage(c.text, focus)}”", style="italic"), (0, 0, 0, 4)))
    return Group(*lines)


def render(result: SearchResult) -> Group:
    head = Text(f"{len(result.citations)} citation(s) from {result.store}", style="dim")
    if result.filter:
        head.append(f" · filter: {result.filter}", style="dim")
    head.append(f" · {result.model} · {result.elapsed_s:.2f} s", style="dim")
    parts: list[RenderableType] = [head, Text(""), Text(marked_answer(result) or "(no answer)")]
    if result.citations:
        parts += [Text(""), Text("Citations", style="bold underline")]
        focus = {n: text for text, numbers in result.supports for n in numbers}
        parts += [citation_view(c, focus.get(c.number, "")) for c in result.citations]
    else:
        parts += [Text(""), Text("No passage of the store was cited.", style="yellow")]
    return Group(*parts)
