"""Task messages in Celery's protocol v2 shape, serialized with kombu.

Headers: lang, task, id, root_id, parent_id, group, eta, expires, retries, timelimit,
argsrepr, kwargsrepr, origin, ignore_result. Body: ``[args, kwargs, embed]`` where embed
holds callbacks, errbacks, chain and chord. Pickle is refused unless DJQ_ALLOW_PICKLE.
"""
from __future__ import annotations

import json
import os
import reprlib
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from kombu import serialization
from kombu.exceptions import ContentDisallowed as KombuContentDisallowed
from kombu.utils.json import object_hook as kombu_object_hook

from ..exceptions import ContentDisallowed, EncodeError, MessageError

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 20
_ORIGIN: str | None = None

EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")
JSON = "application/json"
#: kombu's JSON decoding (its object hook turns {"__type__": ...} markers back into
#: datetimes, UUIDs and decimals), built once: kombu's ``loads`` passes the hook to
#: ``json.loads``, which then builds a new decoder for every message.
_json_decoder = json.JSONDecoder(object_hook=kombu_object_hook)


def json_loads(text: str | bytes, encoding: str = "utf-8") -> Any:
    """kombu's ``loads`` for one JSON text, with one decoder for every call."""
    if not isinstance(text, str):
        text = bytes(text).decode(encoding)
    return _json_decoder.decode(text)


def origin() -> str:
    global _ORIGIN
    if _ORIGIN is None:
        _ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
    return _ORIGIN


@dataclass
class OutgoingMessage:
    """A serialized task message ready for a producer."""

    task_id: str
    task_name: str
    queue: str
    headers: dict[str, Any]
    body: str | bytes
    content_type: str
    content_encoding: str
    priority: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskMessage:
    """A decoded, validated task message as a worker sees it."""

    task_name: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    embed: dict[str, Any]
    eta: datetime | None
    expires: datetime | None
    retries: int
    timelimit: tuple[float | None, float | None]

    @property
    def root_id(self) -> str | None:
        return self.headers.get("root_id")

    @property
    def parent_id(self) -> str | None:
        return self.headers.get("parent_id")

    @property
    def ignore_result(self) -> bool:
        return bool(self.headers.get("ignore_result", False))


def _isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def encode_task(
    task_name: str,
    task_id: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: Mapping[str, Any],
    *,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    **options: Any,
) -> OutgoingMessage:
    """Build and serialize one task message; unencodable arguments raise EncodeError naming
    them. ``options`` are those of ``MessageTemplate.of``."""
    return MessageTemplate.of(task_name, **options).encode(task_id, args, kwargs, argsrepr, kwargsrepr)


@dataclass(frozen=True)
class MessageTemplate:
    """What the messages of one task with the same options share; ``encode`` adds a call."""

    task_name: str
    queue: str
    serializer: str
    headers: dict[str, Any]
    embed: dict[str, Any]
    priority: int | None
    root_id: str | None

    @classmethod
    def of(
        cls,
        task_name: str,
        *,
        queue: str,
        serializer: str = "json",
        eta: datetime | None = None,
        expires: datetime | None = None,
        retries: int = 0,
        timelimit: tuple[float | None, float | None] = (None, None),
        root_id: str | None = None,
        parent_id: str | None = None,
        group_id: str | None = None,
        ignore_result: bool = False,
        priority: int | None = None,
        embed: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, Any] | None = None,
    ) -> MessageTemplate:
        embed_body = {key: None for key in EMBED_KEYS}
        if embed:
            embed_body.update(embed)
        headers = {
            "lang": "py",
            "task": task_name,
            "id": None,
            "shadow": None,
            "eta": _isoformat(eta),
            "expires": _isoformat(expires),
            "group": group_id,
            "group_index": None,
            "retries": retries,
            "timelimit": [timelimit[0], timelimit[1]],
            "root_id": None,
            "parent_id": parent_id,
            "argsrepr": None,
            "kwargsrepr": None,
            "origin": origin(),
            "ignore_result": ignore_result,
        }
        if extra_headers:
            clash = set(extra_headers) & set(headers)
            if clash:
                raise EncodeError(f"cannot send task {task_name!r}: headers {', '.join(sorted(clash))} are the protocol's own")
            headers.update(extra_headers)
        return cls(task_name, queue, serializer, headers, embed_body, priority, root_id)

    def encode(self, task_id: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
               argsrepr: str | None = None, kwargsrepr: str | None = None) -> OutgoingMessage:
        args = list(args)
        kwargs = dict(kwargs)
        try:
            content_type, content_encoding, body = serialize((args, kwargs, self.embed), self.serializer)
        except Exception as exc:
            raise _explain_encode_failure(self.task_name, args, kwargs, self.serializer, exc) from exc
        headers = dict(self.headers)
        headers["id"] = task_id
        headers["root_id"] = self.root_id or task_id
        if argsrepr is None:
            argsrepr = _repr.repr(tuple(args)) if args else "()"
        if kwargsrepr is None:
            kwargsrepr = _repr.repr(kwargs) if kwargs else "{}"
        headers["argsrepr"] = argsrepr
        headers["kwargsrepr"] = kwargsrepr
        return OutgoingMessage(
            task_id=task_id,
            task_name=self.task_name,
            queue=self.queue,
            headers=headers,
            body=body,
            content_type=content_type,
            content_encoding=content_encoding,
            priority=self.priority,
            properties={"correlation_id": task_id},
        )


def serialize(data: Any, serializer: str) -> tuple[str, str, str | bytes]:
    """kombu's ``serialization.dumps``; JSON made of plain types skips kombu's encoder
    class (same text, about half the time) and anything else goes to kombu."""
    if serializer == "json":
        try:
            return "application/json", "utf-8", json.dumps(data)
        except (TypeError, ValueError):
            pass
    content_type, content_encoding, body = serialization.dumps(data, serializer=serializer)
    return str(content_type), str(content_encoding), body


def _explain_encode_failure(
    task_name: str, args: list[Any], kwargs: dict[str, Any], serializer: str, exc: Exception
) -> EncodeError:
    for label, value in [*((f"positional argument {i}", v) for i, v in enumerate(args)),
                         *((f"argument {k!r}", v) for k, v in kwargs.items())]:
        try:
            serialization.dumps(value, serializer=serializer)
        except Exception as inner:
            return EncodeError(
                f"cannot send task {task_name!r}: {label} ({type(value).__name__}) "
                f"cannot be encoded as {serializer}: {inner}"
            )
    return EncodeError(f"cannot send task {task_name!r}: arguments cannot be encoded as {serializer}: {exc}")


def _parse_time(headers: Mapping[str, Any], key: str) -> datetime | None:
    value = headers.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MessageError(f"header {key!r} must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MessageError(f"header {key!r} is not an ISO 8601 date: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _parse_timelimit(headers: Mapping[str, Any]) -> tuple[float | None, float | None]:
    value = headers.get("timelimit") or (None, None)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise MessageError(f"header 'timelimit' must be [hard, soft], got {value!r}")
    out: list[float | None] = []
    for item in value:
        if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise MessageError(f"header 'timelimit' must hold numbers or null, got {value!r}")
        out.append(item)
    return out[0], out[1]


def decode_task(
    headers: Mapping[str, Any] | None,
    body: bytes | str,
    content_type: str | None,
    content_encoding: str | None,
    accept: frozenset[str],
) -> TaskMessage:
    """Decode and validate a received message; anything wrong raises MessageError."""
    headers = dict(headers or {})
    task_name = headers.get("task")
    task_id = headers.get("id")
    if not isinstance(task_name, str) or not task_name:
        raise MessageError("message has no 'task' header (not a protocol v2 task message)")
    if not isinstance(task_id, str) or not task_id:
        raise MessageError("message has no 'id' header (not a protocol v2 task message)")
    try:
        if content_type == JSON and (accept is None or JSON in accept):
            payload = json_loads(body, content_encoding or "utf-8")
        else:
            payload = serialization.loads(body, content_type, content_encoding or "utf-8", accept=accept)
    except KombuContentDisallowed as exc:
        raise ContentDisallowed(f"content type {content_type!r} is not in DJQ_ACCEPT_CONTENT") from exc
    except Exception as exc:
        raise MessageError(f"body cannot be decoded as {content_type}: {exc}") from exc
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        raise MessageError("body must be [args, kwargs, embed]")
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)):
        raise MessageError(f"body args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise MessageError("body kwargs must be an object with string keys")
    if embed is not None and not isinstance(embed, dict):
        raise MessageError(f"body embed must be an object, got {type(embed).__name__}")
    retries = headers.get("retries") or 0
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise MessageError(f"header 'retries' must be a non-negative integer, got {retries!r}")
    return TaskMessage(
        task_name=task_name,
        task_id=task_id,
        args=list(args),
        kwargs=kwargs,
        headers=headers,
        embed=embed or {},
        eta=_parse_time(headers, "eta"),
        expires=_parse_time(headers, "expires"),
        retries=retries,
        timelimit=_parse_timelimit(headers),
    )
