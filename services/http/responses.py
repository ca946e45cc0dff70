"""JSON responses checked once against their route's model: the bytes sent are the bytes validated.

A route that returns a value has FastAPI validate it against the response model, for a plain function in the
thread pool (a second hand-off per request), and serialise the validated model again. A route that returns a
`Response` skips both, so the routes on the hot path answer through `Validated`: the value (JSON-ready, as the
services render their views) is written once by orjson, and those very bytes are validated against the model
declared as the route's `response_model`, strictly (no coercion) and refusing unknown fields, so nothing reaches
the client that the schema does not describe.

The reads answer stored documents, the same ones again and again: `Documents` validates each distinct document
(by its content, less the fields a read recomputes) once, then only those recomputed fields and the page around
the documents per request. A page of 50 took 2 ms to check in full, most of a read's own work.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

T = TypeVar("T")


class Validated(Generic[T]):
    """A response model's adapter, made once per model: checks a value's JSON and answers it."""

    def __init__(self, model: type[T]) -> None:
        self.adapter: TypeAdapter[T] = TypeAdapter(model)

    def response(self, value: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """The value as JSON, once its bytes validate against the model (a failure raises: a 500, as before)."""
        body = orjson.dumps(value)
        self.adapter.validate_json(body, strict=True, extra="forbid")
        return Response(body, status_code=status_code, headers=headers, media_type="application/json")


class Documents:
    """Stored documents of one model answered alone or as a page, each distinct one validated in full only once.

    A document is known by a digest of its JSON less the `moving` fields (those a read recomputes, such as an
    SLA status as of now): a document seen valid before is sent once its moving fields and the page's own fields
    validate, strictly, against the same model's fields. A changed document (a new version, a changed row) has
    another digest and is validated in full. At most `size` digests are kept, the oldest forgotten first.
    """

    def __init__(self, model: type[BaseModel], page: type[BaseModel], moving: Sequence[str], size: int = 16384) -> None:
        # Checking the moving fields apart is the same check only when no validator of the model relates fields.
        if model.__pydantic_decorators__.model_validators:
            raise TypeError(f"{model.__name__} has model validators: its fields cannot be checked apart")
        self.moving = frozenset(moving)
        self.size = size
        self._full: TypeAdapter[Any] = TypeAdapter(model)
        forbid = ConfigDict(extra="forbid")
        fields: dict[str, Any] = {
            name: (model.model_fields[name].annotation, model.model_fields[name]) for name in moving
        }
        moved = create_model(f"{model.__name__}Moving", __config__=forbid, **fields)
        self._moved: TypeAdapter[Any] = TypeAdapter(list[moved])  # type: ignore[valid-type]
        # The page model's own fields but its `items`: the documents, checked apart.
        around: dict[str, Any] = {name: (f.annotation, f) for name, f in page.model_fields.items() if name != "items"}
        self._around: TypeAdapter[Any] = TypeAdapter(
            create_model(f"{page.__name__}Around", __config__=forbid, **around)
        )
        self._seen: dict[bytes, None] = {}  # digests of documents seen valid, oldest first
        self._lock = threading.Lock()

    def one(self, document: Mapping[str, Any]) -> Response:
        """One document as the body (a document the model refuses raises: a 500)."""
        self.check([document])
        return Response(orjson.dumps(document), media_type="application/json")

    def page(self, items: Sequence[Mapping[str, Any]], **fields: Any) -> Response:
        """The page model's `{"items": [...], **fields}` as the body, its items checked as by `one`."""
        self._around.validate_python(fields, strict=True)
        self.check(items)
        return Response(orjson.dumps({"items": items, **fields}), media_type="application/json")

    def check(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Validate documents: in full those not seen valid before, the moving fields of the others."""
        known: list[dict[str, Any]] = []
        for document in documents:
            fixed = dict(document)
            moved = {name: fixed.pop(name) for name in self.moving if name in fixed}
            digest = hashlib.sha256(orjson.dumps(fixed)).digest()
            if digest in self._seen:
                known.append(moved)
                continue
            self._full.validate_json(orjson.dumps(document), strict=True, extra="forbid")
            with self._lock:
                if len(self._seen) >= self.size:
                    del self._seen[next(iter(self._seen))]
                self._seen[digest] = None
        if known:
            self._moved.validate_python(known, strict=True)
