"""The queue's message: one spec as ``enqueue`` writes it and a worker reads it back.

A message's fields are strings (a Redis stream entry): ``spec`` (the body as
JSON, exactly as written), ``key`` (its idempotency key), ``name``, ``source``,
``line``, ``index`` (where ``enqueue`` read it) and ``enqueued_at``. A worker
checks the body again, as ``run`` would, and refuses a message whose key no
longer matches its body.
"""

from __future__ import annotations

import orjson

from provisioner.core.summary import utcnow
from provisioner.queue.streams import Message
from provisioner.results import rfc3339
from provisioner.spec import InvalidSpec, Spec, build_spec


def message_fields(spec: Spec) -> dict[str, str]:
    """The stream entry that carries ``spec``."""
    return {
        "spec": orjson.dumps(spec.body).decode(),
        "key": spec.key,
        "name": spec.name,
        "source": spec.source,
        "line": "" if spec.line is None else str(spec.line),
        "index": str(spec.index),
        "enqueued_at": rfc3339(utcnow()),
    }


def read_message(message: Message) -> tuple[Spec | None, str]:
    """The spec a message carries, or why it carries none (for the dead letters)."""
    fields = message.fields
    try:
        body = orjson.loads(fields["spec"])
    except (KeyError, orjson.JSONDecodeError):
        return None, "not a spec: the message has no valid JSON 'spec' field"
    line = fields.get("line", "")
    spec = build_spec(
        body,
        source=fields.get("source", "queue"),
        line=int(line) if line.isdigit() else None,
        index=int(fields.get("index", "0") or 0),
    )
    if isinstance(spec, InvalidSpec):
        return None, f"invalid spec: {spec.reason}"
    if fields.get("key", spec.key) != spec.key:
        return None, "the message's key does not match its spec (edited in the queue?)"
    return spec, ""


__all__ = ["message_fields", "read_message"]
