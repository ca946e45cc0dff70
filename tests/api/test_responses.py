"""The order routes' responses: the bytes sent are the bytes validated, strictly, against the route's model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.http.responses import Validated
from services.http.schemas.orders import OrderOut
from tests.support import Api

ORDER = Validated(OrderOut)


def _document(api: Api) -> dict[str, Any]:
    r = api.issue()
    assert r.status_code == 201, r.text
    document: dict[str, Any] = r.json()
    return document


def test_a_valid_document_is_sent_as_written(api: Api) -> None:
    document = _document(api)
    response = ORDER.response(document, 201, {"Location": "/x"})
    assert response.body == orjson.dumps(document)
    assert response.status_code == 201 and response.headers["location"] == "/x"
    assert response.media_type == "application/json"


@pytest.mark.parametrize(
    "change",
    [
        {"unexpected": "a field the schema does not describe"},
        {"version": "1"},  # lax validation would coerce it to 1, and the string would be sent
        {"status": "lost"},
        {"issued_at": "yesterday"},
    ],
    ids=["unknown-field", "coercible", "bad-enum", "bad-time"],
)
def test_a_document_the_model_refuses_is_never_sent(api: Api, change: dict[str, Any]) -> None:
    document = {**_document(api), **change}
    with pytest.raises(ValidationError):
        ORDER.response(document)
