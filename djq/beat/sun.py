"""Solar schedules: run at sunrise, sunset, dawn, dusk or solar noon at a place.

The astronomy comes from the optional ``astral`` library (``pip install 'djq[solar]'``);
it is imported only when a solar time is computed, and its absence is a ScheduleError
that says how to install it. On days when the event does not happen (polar day or night)
there is simply no run.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any, ClassVar

from .schedules import Schedule, ScheduleError

#: event -> (astral.sun function, its depression argument in degrees, or None)
EVENTS: dict[str, tuple[str, float | None]] = {
    "sunrise": ("sunrise", None),
    "sunset": ("sunset", None),
    "solar_noon": ("noon", None),
    "dawn_civil": ("dawn", 6.0),
    "dawn_nautical": ("dawn", 12.0),
    "dawn_astronomical": ("dawn", 18.0),
    "dusk_civil": ("dusk", 6.0),
    "dusk_nautical": ("dusk", 12.0),
    "dusk_astronomical": ("dusk", 18.0),
}
#: Far enough to get past a polar night.
SEARCH_DAYS = 190
INSTALL_HINT = "solar schedules need the 'astral' library: pip install 'djq[solar]'"


def astral_sun() -> ModuleType:
    """``astral.sun``, or a ScheduleError with the install hint."""
    try:
        import astral.sun
    except ImportError as exc:
        raise ScheduleError(INSTALL_HINT) from exc
    return astral.sun


@dataclass(frozen=True)
class Solar(Schedule):
    """At ``event`` seen from ``latitude``/``longitude`` (degrees; north and east positive)."""

    event: str
    latitude: float
    longitude: float
    kind: ClassVar[str] = "solar"

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ScheduleError(f"solar event {self.event!r} is unknown; use one of {', '.join(EVENTS)}")
        for name, value, limit in (("latitude", self.latitude, 90), ("longitude", self.longitude, 180)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
                raise ScheduleError(f"{name} must be a number from {-limit} to {limit}, got {value!r}")

    def check_available(self) -> None:
        astral_sun()

    def event_on(self, day: date) -> datetime | None:
        """The event's moment on ``day`` (UTC), or None when it does not happen that day."""
        sun = astral_sun()
        from astral import Observer

        function, depression = EVENTS[self.event]
        kwargs: dict[str, Any] = {"tzinfo": UTC}
        if depression is not None:
            kwargs["depression"] = depression
        try:
            at: datetime = getattr(sun, function)(Observer(self.latitude, self.longitude), day, **kwargs)
        except ValueError:  # astral's way of saying "the sun never gets there that day"
            return None
        return at.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime | None:
        start = moment.astimezone(UTC).date() - timedelta(days=1)
        for offset in range(SEARCH_DAYS):
            at = self.event_on(start + timedelta(days=offset))
            if at is not None and at > moment:
                return at
        return None

    def describe(self) -> str:
        return f"at {self.event.replace('_', ' ')}, seen from {self.latitude:.4f}, {self.longitude:.4f}"


def solar(event: str, latitude: float, longitude: float) -> Solar:
    """``solar("sunset", 48.8566, 2.3522)``: run at sunset in Paris."""
    return Solar(event, float(latitude), float(longitude))
