"""Composing tasks: signatures, chain, group, chord, chunks, map/starmap, link/link_error.

Every piece is a ``Signature``: a dict (so it travels inside messages as JSON, in the
protocol v2 embed fields) that can be sent with ``apply_async``/``delay``.

    chain(add.s(2, 2), add.s(4), add.s(8))()       # 16: each result goes first to the next
    group(add.s(i, i) for i in range(10))()        # a GroupResult
    chord((add.s(i, i) for i in range(10)), tsum.s())()  # tsum gets the 10 results, once

A chord keeps a counter row in the database; the header task that finds every header
result ready claims the row and sends the body, so the body runs once even when header
tasks finish at the same moment on different workers. With the Celery Redis result
bridge, the header is counted in Celery's Redis keys instead (backends/celery_chord.py),
so Celery workers can run part or all of it.
"""
from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from .exceptions import TaskOptionError
from .registry import registry
from .result import AsyncResult, GroupResult

if TYPE_CHECKING:
    from .task import Task

#: Options a signature may carry; they are passed to ``Task.apply_async``.
SIGNATURE_OPTIONS = frozenset({
    "countdown", "eta", "expires", "queue", "priority", "task_id", "ignore_result", "time_limit",
    "soft_time_limit", "link", "link_error", "immutable", "headers",
})
#: Options Celery puts on signatures (in the chains, callbacks and chord bodies of its
#: messages, or in code written for Celery): accepted, and not passed on, except
#: ``routing_key``, which names the queue when ``queue`` does not (the default exchange).
CELERY_OPTIONS = frozenset({
    "reply_to", "stamped_headers", "stamps", "replaced_task_nesting", "exchange", "routing_key",
    "group_id", "group_index", "chord", "chord_size", "root_id", "parent_id", "shadow",
    "serializer", "compression", "retries", "retry", "retry_policy", "delivery_mode", "mandatory",
    "add_to_parent", "publisher", "producer", "connection", "subtask_type", "taskset_id",
})


class Signature(dict):  # type: ignore[type-arg]
    """A task call to make later: task name, arguments, options. ``task.s(...)`` builds one."""

    subtask_type: str | None = None

    def __init__(self, task: str | dict[str, Any], args: Any = None, kwargs: Any = None,
                 options: dict[str, Any] | None = None, immutable: bool = False) -> None:
        if isinstance(task, dict):  # a signature that came back from JSON
            super().__init__(task)
            return
        name = getattr(task, "name", task)
        if not isinstance(name, str) or not name:
            raise TaskOptionError(f"a signature needs a task or a task name, got {task!r}")
        options = dict(options or {})
        immutable = bool(options.pop("immutable", immutable))
        unknown = set(options) - SIGNATURE_OPTIONS - CELERY_OPTIONS
        if unknown:
            raise TaskOptionError(f"signature of {name}: unknown option(s) {', '.join(sorted(unknown))}")
        if args is not None and not isinstance(args, (list, tuple)):
            raise TaskOptionError(f"signature args must be a list or tuple, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TaskOptionError(f"signature kwargs must be a dict, got {type(kwargs).__name__}")
        super().__init__(task=name, args=list(args or ()), kwargs=dict(kwargs or {}), options=options,
                         subtask_type=self.subtask_type, immutable=immutable)

    @property
    def name(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> list[Any]:
        return list(self.get("args") or [])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        return self.setdefault("options", {})  # type: ignore[no-any-return]

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    def __repr__(self) -> str:
        args = ", ".join([*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.name}({args}){'!' if self.immutable else ''}"

    def set(self, **options: Any) -> Signature:
        """Add options (queue=, countdown=, ...); returns the signature."""
        unknown = set(options) - SIGNATURE_OPTIONS - CELERY_OPTIONS
        if unknown:
            raise TaskOptionError(f"signature of {self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        if "immutable" in options:
            self["immutable"] = bool(options.pop("immutable"))
        self.options.update(options)
        return self

    def link(self, callback: Signature) -> Signature:
        """Call ``callback`` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(signature(callback))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Call ``errback`` with this task's id when it fails."""
        self.options.setdefault("link_error", []).append(signature(errback))
        return errback

    def freeze(self) -> str:
        """Give the call its task id now (so results can be found before it is sent)."""
        return self.options.setdefault("task_id", str(uuid.uuid4()))  # type: ignore[no-any-return]

    def apply_async(self, args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Send the call; ``args`` go before the signature's own (unless it is immutable)."""
        call_args, call_kwargs, merged = self._call(args, kwargs, options)
        return _task(self.name).apply_async(call_args, call_kwargs, **merged)

    def _call(self, args: Any, kwargs: dict[str, Any] | None,
              options: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        call_args = self.args if self.immutable else [*args, *self.args]
        call_kwargs = self.kwargs if self.immutable else {**self.kwargs, **(kwargs or {})}
        own = {key: value for key, value in self.options.items() if key not in CELERY_OPTIONS}
        if not own.get("queue") and isinstance(self.options.get("routing_key"), str) and self.options["routing_key"]:
            own["queue"] = self.options["routing_key"]
        merged = {**own, **options}
        merged.pop("immutable", None)
        return call_args, call_kwargs, merged

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.delay(*args, **kwargs)

    def __or__(self, other: Signature) -> chain:  # type: ignore[override]
        return chain(self, other)


def signature(value: Any, args: Any = None, kwargs: Any = None, **options: Any) -> Signature:
    """A Signature from a task, a task name, or a signature dict (as found in a message)."""
    if isinstance(value, Signature) and args is None and kwargs is None and not options:
        return value
    if isinstance(value, dict):
        kind = _KINDS.get(value.get("subtask_type") or "")
        return kind.from_dict(value) if kind else Signature(dict(value))
    return Signature(value, args, kwargs, options)


def _task(name: str) -> Task[Any, Any]:
    return registry.get(name)


def _sigs(items: Iterable[Any]) -> list[Signature]:
    return [signature(item) for item in items]


class chain(Signature):  # noqa: N801 - the name users know
    """Tasks one after another, each result passed first to the next: ``chain(a.s(), b.s())``."""

    subtask_type = "chain"

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        flat: list[Signature] = []
        for item in _sigs(tasks):
            flat.extend(item.tasks if isinstance(item, chain) else [item])
        if not flat:
            raise TaskOptionError("a chain needs at least one task")
        super().__init__("djq.chain", kwargs={"tasks": flat})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> chain:
        return cls(*data["kwargs"]["tasks"])

    @property
    def tasks(self) -> list[Signature]:
        return _sigs(self["kwargs"]["tasks"])

    def __or__(self, other: Signature) -> chain:  # type: ignore[override]
        return chain(*self.tasks, other)

    def apply_async(self, args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        tasks = self.tasks
        first, rest = tasks[0], tasks[1:]
        if isinstance(first, group) and rest:  # a group followed by more is a chord
            return chord(first, chain(*rest) if len(rest) > 1 else rest[0]).apply_async(args, kwargs, **options)
        for item in rest:
            item.freeze()
        if isinstance(first, (group, chord, chain)):
            raise TaskOptionError("a chain may start with a group, but not hold one after its first task")
        if any(isinstance(item, (group, chord)) for item in rest):
            raise TaskOptionError("a group or chord can only be the first element of a chain")
        embed = {"chain": list(reversed(rest))} if rest else None
        first_result = first.apply_async(args, kwargs, **options, **({"embed": embed} if embed else {}))
        result: Any = first_result
        parent: Any = first_result
        for item in rest:
            result = AsyncResult(item.options["task_id"], task_name=item.name)
            result.parent = parent
            parent = result
        return result


class group(Signature):  # noqa: N801
    """Tasks side by side: ``group(add.s(i, i) for i in range(10))()`` returns a GroupResult."""

    subtask_type = "group"

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        super().__init__("djq.group", kwargs={"tasks": _sigs(tasks)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> group:
        return cls(*data["kwargs"]["tasks"])

    @property
    def tasks(self) -> list[Signature]:
        return _sigs(self["kwargs"]["tasks"])

    def apply_async(self, args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any) -> GroupResult:
        group_id = options.pop("group_id", None) or str(uuid.uuid4())
        results = send_all(self.tasks, args, kwargs, group_id=group_id, **options)
        saved = GroupResult(group_id, results)
        saved.save()
        return saved


class chord(Signature):  # noqa: N801
    """A group, then one body task called with the list of their results (in header order)."""

    subtask_type = "chord"

    def __init__(self, header: Any, body: Any = None) -> None:
        head = header if isinstance(header, group) else group(header)
        for item in head.tasks:
            if item.subtask_type is not None:
                raise TaskOptionError(f"a chord's header holds plain task signatures, not a {item.subtask_type}")
        super().__init__("djq.chord", kwargs={"header": head, "body": None if body is None else signature(body)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> chord:
        return cls(group.from_dict(data["kwargs"]["header"]), data["kwargs"]["body"])

    def __call__(self, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if body is not None and self["kwargs"]["body"] is None:
            return chord(self["kwargs"]["header"], body).apply_async(args, kwargs)
        return self.apply_async(((body,) if body is not None else ()) + args, kwargs)

    def apply_async(self, args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        from .backends import database_alias, get_backend
        from .backends.celery_chord import set_size
        from .models import ChordCounter

        header, body = group.from_dict(self["kwargs"]["header"]), self["kwargs"]["body"]
        if body is None:
            raise TaskOptionError("a chord needs a body: chord(header, body) or chord(header)(body)")
        body = signature(body)
        body_id = body.freeze() if body.subtask_type is None else str(uuid.uuid4())
        tasks = header.tasks
        if not tasks:  # nothing to wait for
            return body.apply_async(([],))
        group_id = options.pop("group_id", None) or str(uuid.uuid4())
        for item in tasks:
            item.freeze()
        celery_redis = getattr(get_backend(), "redis", None)
        if celery_redis is not None:  # counted in Celery's keys, by Celery and djq workers alike
            set_size(celery_redis, group_id, len(tasks))
        else:
            ChordCounter.objects.using(database_alias()).create(
                group_id=group_id, total=len(tasks), body=dict(body), body_id=body_id,
                result_ids=[item.options["task_id"] for item in tasks])
        results = send_all(tasks, args, kwargs, group_id=group_id, ignore_result=False, embed={"chord": body}, **options)
        saved = GroupResult(group_id, results)
        saved.save()
        result: AsyncResult[Any] = AsyncResult(body_id, task_name=body.name)
        result.parent = saved
        return result


def send_all(signatures: list[Signature], args: Any, kwargs: dict[str, Any] | None, **options: Any) -> list[Any]:
    """Send the members of a group: plain task signatures all encoded first, then in one
    batch (``producer.send_many``); nested chains and groups, eager runs and tasks that
    send their own way one by one. Results in the order of ``signatures``."""
    from . import enqueue
    from .conf import djq_settings
    from .task import Task

    results: list[Any] = [None] * len(signatures)
    messages, one_by_one = [], []
    for index, item in enumerate(signatures):
        task = _task(item.name) if item.subtask_type is None else None
        if task is None or djq_settings.TASK_ALWAYS_EAGER or type(task).apply_async is not Task.apply_async:
            one_by_one.append(index)
            continue
        call_args, call_kwargs, merged = item._call(args, kwargs, options)
        per_call = {key: merged.pop(key, None) for key in ("task_id", "argsrepr", "kwargsrepr")}
        enqueue.check_call(task, call_args, call_kwargs)
        message = enqueue.build(enqueue.resolve(task, **merged), call_args, call_kwargs, **per_call)
        message.headers["group_index"] = index  # Celery orders a chord's results by it
        messages.append(message)
        results[index] = AsyncResult(message.task_id, task_name=task.name)
    for index in one_by_one:
        results[index] = signatures[index].apply_async(args, kwargs, **options)
    enqueue.send_many(messages)
    return results


def chunks(task: Task[Any, Any], items: Iterable[Any], n: int) -> group:
    """A group of starmap tasks, each calling ``task`` on ``n`` of ``items`` (each a tuple of args)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TaskOptionError(f"chunks() needs a positive chunk size, got {n!r}")
    iterator = iter(items)
    parts = iter(lambda: list(itertools.islice(iterator, n)), [])
    return group(xstarmap(task, part) for part in parts)


def xmap(task: Task[Any, Any], items: Iterable[Any]) -> Signature:
    return Signature("djq.map", (task.name, list(items)))


def xstarmap(task: Task[Any, Any], items: Iterable[Any]) -> Signature:
    return Signature("djq.starmap", (task.name, [list(item) for item in items]))


def embed_links(embed: dict[str, Any] | None, link: Any, link_error: Any) -> dict[str, Any] | None:
    """Merge ``link``/``link_error`` into a message's embed callbacks/errbacks."""
    if link is None and link_error is None:
        return embed
    embed = dict(embed or {})
    for key, value in (("callbacks", link), ("errbacks", link_error)):
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        embed[key] = [*(embed.get(key) or []), *(signature(item) for item in items)]
    return embed


_KINDS: dict[str, Any] = {"chain": chain, "group": group, "chord": chord}
