"""Optional dependencies: what a broker URL needs that a plain ``pip install djq`` lacks.

One place answers "is it installed?" for the system check (djq.E013), for the worker at
start and for publishing, so all three say the same one line with the extra to install.
The pools check their own (djq/concurrency/green.py).
"""
from __future__ import annotations

import importlib

#: URL scheme -> (the extra, the modules it brings, in the order to try them)
BROKER_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    scheme: ("redis", ("redis", "kombu.transport.redis")) for scheme in ("redis", "rediss", "redis+socket", "sentinel")
}


def _first_missing(modules: tuple[str, ...]) -> str | None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return exc.name or module
    return None


def missing_for_broker(url: str) -> str | None:
    """One line naming what ``url`` needs and how to install it, or None if nothing is missing."""
    scheme = url.split("://", 1)[0]
    if scheme == "djq":
        return _missing_for_database(url)
    if scheme not in BROKER_EXTRAS:
        return None
    extra, modules = BROKER_EXTRAS[scheme]
    missing = _first_missing(modules)
    if missing is None:
        return None
    return f"the {scheme}:// broker needs the Python package {missing!r}, which is not installed: pip install 'djq[{extra}]'"


def _missing_for_database(url: str) -> str | None:
    from django.db import connections

    alias = url.split("://", 1)[1].split("/", 1)[0] or "default"
    engine = connections.settings[alias].get("ENGINE", "") if alias in connections.settings else ""
    if not engine.endswith(("postgresql", "postgis")):
        return None
    if _first_missing(("psycopg",)) is None or _first_missing(("psycopg2",)) is None:
        return None
    return (f"the djq:// broker on PostgreSQL database {alias!r} needs the Python package 'psycopg', "
            "which is not installed: pip install 'djq[postgres]'")
