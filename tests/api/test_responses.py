"""The order routes' responses: the bytes sent are the bytes validated, strictly, against the route's model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError, model_validator

from services.http.responses import Documents, Validated
from services.http.schemas.orders import OrderOut, OrderPage
from services.orders import views
from tests.support import Api

ORDER = Validated(OrderOut)


def _document(api: Api, **overrides: Any) -> dict[str, Any]:
    r = api.issue(**overrides)
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


# ----------------------------------------------------------------- stored documents: each validated in full once

MOVING = ("sla_status", "remaining_seconds")


def _stored(size: int = 16384) -> Documents:
    return Documents(OrderOut, OrderPage, moving=MOVING, size=size)


def test_stored_documents_are_sent_as_written(api: Api) -> None:
    documents = [_document(api), _document(api, issuer_reference="second")]
    stored = _stored()
    for _ in range(2):  # first seen, then known
        assert stored.one(documents[0]).body == orjson.dumps(documents[0])
        page = stored.page(documents, next_cursor="c")
        assert page.body == orjson.dumps({"items": documents, "next_cursor": "c"})
        assert page.media_type == "application/json"


@pytest.mark.parametrize("seen_before", [False, True], ids=["first-read", "after-a-valid-read"])
@pytest.mark.parametrize(
    "change",
    [
        {"unexpected": "a field the schema does not describe"},
        {"version": "1"},
        {"status": "lost"},
        {"issued_at": "yesterday"},
        {"sla_status": "lost"},  # a moving field: checked on every read
        {"remaining_seconds": "5"},
        {"remaining_seconds": True},
    ],
    ids=["unknown-field", "coercible", "bad-enum", "bad-time", "bad-sla-status", "remaining-str", "remaining-bool"],
)
def test_a_stored_document_the_model_refuses_is_never_sent(api: Api, change: dict[str, Any], seen_before: bool) -> None:
    document = _document(api)
    stored = _stored()
    if seen_before:
        stored.one(document)
    bad = {**document, **change}
    with pytest.raises(ValidationError):
        stored.one(bad)
    with pytest.raises(ValidationError):
        stored.page([document, bad], next_cursor=None)


def test_a_stored_document_missing_a_moving_field_is_never_sent(api: Api) -> None:
    document = _document(api)
    stored = _stored()
    stored.one(document)
    with pytest.raises(ValidationError):
        stored.one({k: v for k, v in document.items() if k != "remaining_seconds"})


def test_the_page_around_the_documents_is_checked(api: Api) -> None:
    stored, document = _stored(), _document(api)
    with pytest.raises(ValidationError):
        stored.page([document], next_cursor=5)
    with pytest.raises(ValidationError):
        stored.page([document], next_cursor=None, unexpected=1)


def test_the_digests_kept_are_bounded(api: Api) -> None:
    stored = _stored(size=2)
    documents = [_document(api, issuer_reference=f"ref-{n}") for n in range(3)]
    for document in documents:
        stored.one(document)
    assert len(stored._seen) == 2


def test_a_model_whose_validators_relate_fields_is_refused() -> None:
    class Related(BaseModel):
        a: int
        b: int

        @model_validator(mode="after")
        def ordered(self) -> Related:
            assert self.a <= self.b
            return self

    with pytest.raises(TypeError):
        Documents(Related, OrderPage, moving=("b",))


@pytest.mark.parametrize("path", ["/v1/orders/{id}", "/v1/orders?limit=50"], ids=["one", "page"])
def test_a_stored_row_changed_behind_the_service_is_caught_on_read(api: Api, path: str) -> None:
    """The view row is the service's own, but a read never trusts it: a document edited in the database (by hand,
    by a faulty migration) fails its read with a 500, even after the same order read valid."""
    document = _document(api)
    url = path.format(id=document["id"])
    assert api.call("GET", url, "issuer").status_code == 200
    with api.container.db.transaction() as conn:
        conn.execute(
            views.orders.update()
            .where(views.orders.c.id == document["id"])
            .values(document={**document, "status": "lost"})
        )
    with pytest.raises(ValidationError):  # TestClient raises the server's exception: the app answers a 500
        api.call("GET", url, "issuer")
