"""JSON responses checked once against their route's model: the bytes sent are the bytes validated.

A route that returns a value has FastAPI validate it against the response model, for a plain function in the
thread pool (a second hand-off per request), and serialise the validated model again. A route that returns a
`Response` skips both, so the routes on the hot path answer through `Validated`: the value (JSON-ready, as the
services render their views) is written once by orjson, and those very bytes are validated against the model
declared as the route's `response_model`, strictly (no coercion) and refusing unknown fields, so nothing reaches
the client that the schema does not describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Response
from pydantic import TypeAdapter

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
