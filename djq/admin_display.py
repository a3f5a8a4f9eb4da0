"""How the admin shows a task's fields: state badges, pretty JSON, times to the second,
runtimes, the progress bar (for the pages of djq/admin.py)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from . import states

#: Badge colours per state: (background, text). A custom state (PROGRESS, ...) gets CUSTOM_STATE_COLOURS.
STATE_COLOURS: dict[str, tuple[str, str]] = {
    states.SUCCESS: ("#2e7d32", "#ffffff"),
    states.FAILURE: ("#c62828", "#ffffff"),
    states.STARTED: ("#1565c0", "#ffffff"),
    states.RECEIVED: ("#1565c0", "#ffffff"),
    states.RETRY: ("#ef6c00", "#ffffff"),
    states.REVOKED: ("#616161", "#ffffff"),
    states.PENDING: ("#e0e0e0", "#212121"),
}
CUSTOM_STATE_COLOURS = ("#6a1b9a", "#ffffff")
#: characters of a worker's name the results list shows
WORKER_CHARS = 24

_PRE_STYLE = "white-space: pre-wrap; word-break: break-word; margin: 0;"


def state_badge(state: str) -> SafeString:
    background, colour = STATE_COLOURS.get(state, CUSTOM_STATE_COLOURS)
    return format_html(
        '<span class="djq-state" style="background: {}; color: {}; padding: 2px 8px; '
        'border-radius: 10px; font-weight: bold; font-size: 11px; white-space: nowrap;">{}</span>',
        background, colour, state,
    )


def pretty_json(text: str | None) -> str:
    """Indented JSON when ``text`` is JSON, else ``text`` unchanged (a repr, a truncated body)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def pre(text: str | None) -> SafeString:
    return format_html('<pre style="{}">{}</pre>', _PRE_STYLE, text or "")


def to_the_second(when: datetime | None, ms: bool = False) -> str | None:
    """A time in the site's time zone, to the second (the admin's default stops at the
    minute), or to the millisecond."""
    if when is None:
        return None
    local = timezone.localtime(when) if timezone.is_aware(when) else when
    return f"{local:%Y-%m-%d %H:%M:%S.%f}"[:-3] if ms else f"{local:%Y-%m-%d %H:%M:%S}"


def breakable(text: str, after: str) -> SafeString:
    """``text`` escaped, with a line-break opportunity after each character in ``after``
    (a dotted task name has no spaces to wrap at)."""
    return mark_safe("".join(escape(char) + ("<wbr>" if char in after else "") for char in text))


def two_lines(when: str | None) -> SafeString | str:
    """``YYYY-MM-DD HH:MM:SS`` that wraps between date and time, never inside either."""
    if not when:
        return "-"
    day, _, clock = when.partition(" ")
    return format_html('<span style="white-space: nowrap;">{}</span> <span style="white-space: nowrap;">{}</span>',
                       day, clock)


def format_runtime(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def progress_bar(result: str | None) -> SafeString | str:
    """A progress bar from a stored ``{"current": n, "total": m}`` meta; "" for anything else."""
    try:
        meta: Any = json.loads(result) if result else None
        current, total = float(meta["current"]), float(meta["total"])
    except (ValueError, TypeError, KeyError):
        return ""
    if total <= 0:
        return ""
    percent = max(0, min(100, round(100 * current / total)))
    return format_html(
        '<span class="djq-progress" title="{} of {}" style="display: inline-block; width: 100px; height: 10px; '
        'background: #e0e0e0; border-radius: 5px; overflow: hidden; vertical-align: middle;">'
        '<span style="display: block; width: {}%; height: 100%; background: #6a1b9a;"></span></span> {}%',
        f"{current:g}", f"{total:g}", percent, percent,
    )
