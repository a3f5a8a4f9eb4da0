"""The legs of ``bench.py --versus`` and the order their runs take in each repeat.

A leg pairs one djq run with the Celery run it is compared with, on the same pool and
concurrency:
- ``redis-POOL-results`` / ``amqp-POOL-results``: djq on that broker with its database
  results (``--results-db``) against Celery on that broker with Redis results;
- ``redis-POOL-noresults`` / ``amqp-POOL-noresults``: both with ``ignore_result``;
- ``sqlite-POOL-results`` / ``postgres-POOL-results``: djq's ``djq://`` broker on that
  database against Celery on Redis with Redis results (the run ``redis-POOL-results``
  already makes: one Celery run serves the three legs);
for POOL in threads (-c 8), prefork (-c 2) and solo.

Each repeat runs every Celery run next to the djq runs compared with it, and the order
rotates from repeat to repeat (which group comes first, and within a group which
system), so slow minutes of a shared machine fall on both sides.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

#: pool -> concurrency, as the comparison is made
POOLS = {"threads": 8, "prefork": 2, "solo": 1}
DJQ_BROKERS = ("redis", "amqp", "sqlite", "postgres")


@dataclass(frozen=True)
class Run:
    """One worker run: ``system`` djq or celery; ``broker`` redis, amqp, sqlite or postgres (djq://)."""

    system: str
    broker: str
    pool: str
    results: bool

    @property
    def concurrency(self) -> int:
        return POOLS[self.pool]

    @property
    def key(self) -> str:
        return f"{self.system}-{self.broker}-{self.pool}-{'results' if self.results else 'noresults'}"


@dataclass(frozen=True)
class Leg:
    name: str
    djq: Run
    celery: Run

    @property
    def label(self) -> str:
        broker = {"sqlite": "djq:// SQLite", "postgres": "djq:// PostgreSQL", "redis": "Redis",
                  "amqp": "RabbitMQ"}[self.djq.broker]
        stored = "results" if self.djq.results else "no results"
        versus = "" if self.djq.broker == self.celery.broker else " vs Celery on Redis"
        return f"{broker}, {stored}, {self.djq.pool} -c {self.djq.concurrency}{versus}"


def all_legs() -> list[Leg]:
    legs = []
    for broker in DJQ_BROKERS:
        for results in ((True, False) if broker in ("redis", "amqp") else (True,)):
            for pool in POOLS:
                celery_broker = broker if broker in ("redis", "amqp") else "redis"
                djq = Run("djq", broker, pool, results)
                name = f"{broker}-{pool}-{'results' if results else 'noresults'}"
                legs.append(Leg(name, djq, Run("celery", celery_broker, pool, results)))
    return legs


def select(patterns: str | None) -> list[Leg]:
    """The legs whose names match one of the comma-separated glob ``patterns`` (all if None).

    Raises ValueError naming the legs there are when a pattern matches none.
    """
    legs = all_legs()
    if not patterns:
        return legs
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    for pattern in wanted:
        if not any(fnmatch.fnmatchcase(leg.name, pattern) for leg in legs):
            raise ValueError(f"--legs {pattern!r} matches no leg; the legs are: {', '.join(l.name for l in legs)}")
    return [leg for leg in legs if any(fnmatch.fnmatchcase(leg.name, p) for p in wanted)]


def plan(legs: list[Leg], repeat: int) -> list[Run]:
    """The runs of repeat number ``repeat`` (0-based), in the order they run."""
    groups: dict[Run, list[Run]] = {}
    for leg in legs:
        members = groups.setdefault(leg.celery, [leg.celery])
        if leg.djq not in members:
            members.append(leg.djq)
    ordered = list(groups.values())
    shift = repeat % len(ordered) if ordered else 0
    ordered = ordered[shift:] + ordered[:shift]
    runs: list[Run] = []
    for members in ordered:
        turn = repeat % len(members)
        runs += members[turn:] + members[:turn]
    return runs
