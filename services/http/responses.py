"""JSON responses validated once against their route's model, then written by pydantic's serializer.

A route that returns a value has FastAPI validate it again against the response model, and for a plain function
in the thread pool: a second hand-off per request. A route that returns a `Response` skips both, so the routes on
the hot path validate here, with the adapter of the model they declare as `response_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from fastapi import Response
from pydantic import TypeAdapter

T = TypeVar("T")


class Validated(Generic[T]):
    """A response model's adapter, made once per model: validates a value and answers it as JSON."""

    def __init__(self, model: type[T]) -> None:
        self.adapter: TypeAdapter[T] = TypeAdapter(model)

    def response(self, value: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """The value, validated against the model (a failure raises, as FastAPI's own check would), as JSON."""
        body = self.adapter.dump_json(self.adapter.validate_python(value), by_alias=True)
        return Response(body, status_code=status_code, headers=headers, media_type="application/json")
