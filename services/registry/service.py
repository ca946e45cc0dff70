"""The platform registry: register platforms and their representatives, change them, rotate webhook secrets.

Event-sourced like the orders: each platform is a stream of the event store (`platform-<id>`, each fact with its
actor), every command reads the stream, decides, appends and publishes on the bus in one transaction, and the
`platforms` table is a projection of the streams (written in that transaction, rebuilt by `takedown projections
rebuild`). Signing secrets are never events: they live in `platform_secrets`, state beside the projection,
sealed with a key-encryption key that is not in the database (`services/registry/kek.py`); a secret is shown once,
in the answer of the command that made it, and nowhere after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, bindparam, delete, select, text

from services.registry.domain import (
    REGISTRATION_FIELDS,
    PlatformState,
    apply,
    changes_of,
    recorded_changes,
    replay,
)
from services.registry.errors import (
    PlatformNameTaken,
    PlatformNotFound,
    RepresentativeConflict,
    RepresentativeRefused,
    SecretsKeyError,
    WebhookUrlRefused,
)
from services.registry.kek import Keyring
from services.registry.tables import platform_secrets, platforms
from services.webhooks.safety import is_allowed_destination
from services.webhooks.signing import generate_secret
from shared.bus import MessageBus, Published
from shared.clock import Clock
from shared.db import Database, TransientError
from shared.events import (
    Event,
    PlatformChanged,
    PlatformRegistered,
    PlatformSecretRotated,
    PlatformWebhookDisabled,
    Representative,
    load_event,
)
from shared.eventstore import ConcurrencyError, EventStore, NewEvent, RecordedEvent
from shared.ids import new_id
from shared.logs import current_request_id

# The law obliges platforms with more than this many users to name a local representative who is a Kazakh citizen.
OBLIGED_ABOVE_USERS = 100_000
CITIZENSHIP = "KZ"
STREAM_PREFIX = "platform-"


def stream_id(platform_id: str) -> str:
    """The platform's stream in the event store."""
    return f"{STREAM_PREFIX}{platform_id}"


def check_webhook_url(url: str | None, allow_list: Sequence[str], *, https_only: bool = False) -> None:
    """Refuse a webhook URL that is malformed, plain http where `https_only`, or resolves to an internal address."""
    if url is None:
        return
    ok, reason = is_allowed_destination(url, list(allow_list), https_only=https_only)
    if not ok:
        raise WebhookUrlRefused(reason)


def _check_representative(
    monthly_users: int, representative: Mapping[str, Any], obliged_above: int, *, conflict: bool = False
) -> None:
    """Refuse an obliged platform without a citizen; `conflict`: the registration on record makes it so."""
    if monthly_users > obliged_above and representative.get("citizenship") != CITIZENSHIP:
        refusal = RepresentativeConflict if conflict else RepresentativeRefused
        raise refusal(
            f"a platform with more than {obliged_above:,} users must name a representative who is a Kazakh citizen"
        )


def _name_free(conn: Connection, name: str, platform_id: str | None = None) -> None:
    # Checked first for a clear refusal; a concurrent registration of the same name still meets the unique key.
    taken = conn.execute(select(platforms.c.id).where(platforms.c.name == name)).first()
    if taken is not None and taken.id != platform_id:
        raise PlatformNameTaken(f"a platform named {name!r} is already registered")


def public_view(row: Any) -> dict[str, Any]:
    """A platform as the API shows it (a `platforms` row or a PlatformState): never its secrets."""
    return {
        "id": row.id,
        "name": row.name,
        "monthly_users": row.monthly_users,
        "representative": row.representative,
        "webhook_url": row.webhook_url,
        "webhook_enabled": row.webhook_enabled,
        "webhook_disabled_reason": row.webhook_disabled_reason,
        "secret_rotation_overlap_until": row.previous_secret_expires_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# ---------------------------------------------------------------------------------------------- reads
# Module functions over the projection, taking the caller's connection: other services read through these.


def get(conn: Connection, platform_id: str) -> Any:
    """A platform's row, or PlatformNotFound."""
    row = find(conn, platform_id)
    if row is None:
        raise PlatformNotFound()
    return row


# Built once: a select with its value inline is keyed for SQLAlchemy's statement cache on every call.
_FIND = select(platforms).where(platforms.c.id == bindparam("platform_id"))


def find(conn: Connection, platform_id: str) -> Any | None:
    """A platform's row, or None."""
    return conn.execute(_FIND, {"platform_id": platform_id}).first()


# Its id alone: the driver describes every column a result carries, and a whole row cost 12% of an order's intake.
_EXISTS = select(platforms.c.id).where(platforms.c.id == bindparam("platform_id"))


def exists(conn: Connection, platform_id: str) -> bool:
    """Whether a platform with this id is registered."""
    return conn.execute(_EXISTS, {"platform_id": platform_id}).first() is not None


def list_all(conn: Connection) -> list[Any]:
    """Every platform, by name."""
    return list(conn.execute(select(platforms).order_by(platforms.c.name)))


def _stream(conn: Connection, platform_id: str) -> list[RecordedEvent]:
    # The store is stateless (the dialect picks the SQL): a read needs no service around it.
    return EventStore(conn.dialect.name).read_stream(conn, stream_id(platform_id))


def history(conn: Connection, platform_id: str) -> list[dict[str, Any]]:
    """Every recorded change of a platform's registration, oldest first, with who made it."""
    get(conn, platform_id)
    return [
        {
            "type": e.type,
            "recorded_at": e.recorded_at,
            "actor": e.meta.get("actor"),
            "position": e.position,
            "data": e.data,
        }
        for e in _stream(conn, platform_id)
    ]


def on_record(conn: Connection, platform_id: str, at: datetime) -> dict[str, Any]:
    """The registration as it stood at `at`: name, users, representative and webhook URL (replayed from history)."""
    get(conn, platform_id)
    state: dict[str, Any] = {}
    for e in _stream(conn, platform_id):
        if e.recorded_at > at:
            break
        event = load_event(e.type, e.schema_version, e.data)
        if isinstance(event, PlatformRegistered):
            state = event.model_dump(mode="json", include=set(REGISTRATION_FIELDS))
        elif isinstance(event, PlatformChanged):
            state |= {k: v for k, v in event.changes.items() if k in REGISTRATION_FIELDS}
    return state


def representative_of(stored: Any) -> Representative | None:
    """The representative as an order's history records it, from the registry's stored form (None if unusable)."""
    if not isinstance(stored, dict):
        return None
    try:
        return Representative.model_validate({k: stored[k] for k in Representative.model_fields if k in stored})
    except ValidationError:
        return None


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where and how to push to a platform: its webhook URL, whether it is enabled, its signing secrets, and the
    representative on record when it was read (a delivery records both URL and representative)."""

    platform_id: str
    url: str | None
    enabled: bool
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None
    representative: Representative | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with now: the current one, and the previous one during its overlap."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


def endpoints(conn: Connection, platform_ids: Iterable[str], keyring: Keyring) -> dict[str, WebhookEndpoint]:
    """The webhook endpoints of these platforms, by platform id, their secrets opened (unknown ids are absent)."""
    ids = set(platform_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(
            platforms.c.id,
            platforms.c.webhook_url,
            platforms.c.webhook_enabled,
            platform_secrets.c.secret,
            platform_secrets.c.previous_secret,
            platforms.c.previous_secret_expires_at,
            platforms.c.representative,
        )
        .join(platform_secrets, platform_secrets.c.platform_id == platforms.c.id)
        .where(platforms.c.id.in_(ids))
    )
    return {
        r.id: WebhookEndpoint(
            r.id,
            r.webhook_url,
            r.webhook_enabled,
            keyring.open(r.secret, r.id),
            keyring.open(r.previous_secret, r.id) if r.previous_secret is not None else None,
            r.previous_secret_expires_at,
            representative=representative_of(r.representative),
        )
        for r in rows
    }


def reseal(conn: Connection, keyring: Keyring) -> int:
    """Seal, under the keyring's current KEK, every stored secret that is not (plaintext, or an older KEK's);
    the rows changed. In the caller's transaction: all of them or, if one does not open, none."""
    query = select(platform_secrets).order_by(platform_secrets.c.platform_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # a concurrent rotation of one secret waits, and is not lost
    changed = 0
    for row in conn.execute(query).all():
        values = {
            column: keyring.seal(keyring.open(stored, row.platform_id), row.platform_id)
            for column, stored in (("secret", row.secret), ("previous_secret", row.previous_secret))
            if keyring.needs_sealing(stored)
        }
        if values:
            # Compare and set: two processes sealing at start-up change each row once.
            conn.execute(
                platform_secrets.update()
                .where(platform_secrets.c.platform_id == row.platform_id, platform_secrets.c.secret == row.secret)
                .values(values)
            )
            changed += 1
    return changed


def _no_keyring() -> Keyring:
    raise SecretsKeyError("no key-encryption key is configured for the webhook secrets")


# ------------------------------------------------------------------------------------------- projection


def _write(conn: Connection, states: Sequence[PlatformState], *, fresh: bool) -> None:
    """Write these platforms' rows of the projection (`fresh`: none of them has a row yet)."""
    if not states:
        return
    if not fresh:
        conn.execute(delete(platforms).where(platforms.c.id.in_([s.id for s in states])))
    conn.execute(platforms.insert(), [s.row() for s in states])


class PlatformsProjection:
    """`platforms` as a projection of the platform streams, for `takedown projections rebuild`.

    Not run by the live projection runner: the commands write the same rows (`PlatformState.row`) in their own
    transaction, as the registry must be read back at once (an order names a platform just registered).
    """

    name = "registry"

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def handle(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Replay the platforms these events touched and write their rows."""
        touched = sorted({e.stream_id for e in events if e.type.startswith("platform.")})
        if not touched:
            return
        streams = self.store.read_streams(conn, touched, positions=False)
        states = [replay(load_event(e.type, e.schema_version, e.data) for e in stored) for stored in streams.values()]
        _write(conn, [s for s in states if s is not None], fresh=False)

    def reset(self, conn: Connection) -> None:
        """Rebuild every row in this one transaction (the secrets stay: they are not derived from events).

        Not a bare delete: between it and the replay by position, orders naming a platform would be refused and
        the notifier would cancel its pushes. Every platform stream (those sequenced, and those whose rows exist,
        which covers events not yet given a position) is replayed here; the batches `handle` sees then write the
        same rows again. A row with no stream behind it is dropped.
        """
        if conn.dialect.name == "postgresql":
            # Commands wait (reads do not) until this commits: none can commit a row this replay has not seen.
            conn.execute(text("LOCK TABLE platforms IN EXCLUSIVE MODE"))
        ids = {stream_id(row.id) for row in conn.execute(select(platforms.c.id))}
        after = 0
        while batch := self.store.read_all(conn, after=after, limit=10_000):
            ids |= {e.stream_id for e in batch if e.type.startswith("platform.")}
            after = batch[-1].position or after
        streams = self.store.read_streams(conn, sorted(ids), positions=False)
        states = [replay(load_event(e.type, e.schema_version, e.data) for e in stored) for stored in streams.values()]
        conn.execute(delete(platforms))
        _write(conn, [s for s in states if s is not None], fresh=True)


# ---------------------------------------------------------------------------------------------- service


@dataclass
class Registry:
    """The registry's use cases; each public command is one transaction, like `OrderService`'s."""

    db: Database
    store: EventStore
    clock: Clock
    bus: MessageBus = field(default_factory=MessageBus)
    allow_list: Sequence[str] = ()
    https_only: bool = False  # production: webhooks are https
    obliged_above: int = OBLIGED_ABOVE_USERS
    secret_overlap: timedelta = timedelta(hours=24)
    # The webhook secrets' keyring, loaded on first use (the KEK file is made then, outside production).
    keyring: Callable[[], Keyring] = _no_keyring

    # ------------------------------------------------------------------------------------------ writes

    def register(self, actor: str, fields: Mapping[str, Any]) -> tuple[PlatformState, str]:
        """Add a platform (name, monthly_users, representative, webhook_url); its state and secret (shown once)."""
        check_webhook_url(
            fields.get("webhook_url"), self.allow_list, https_only=self.https_only
        )  # resolves the host: before the transaction
        return self.db.run(lambda conn: self.register_in(conn, fields, self.clock.now(), actor=actor))

    def register_in(
        self, conn: Connection, fields: Mapping[str, Any], now: datetime, *, actor: str = "system"
    ) -> tuple[PlatformState, str]:
        """`register` in the caller's transaction, at `now` (seeding, the demo, benches); the URL is not checked."""
        _name_free(conn, fields["name"])
        _check_representative(fields["monthly_users"], fields["representative"], self.obliged_above)
        platform_id = new_id()
        registered = PlatformRegistered(
            platform_id=platform_id,
            name=fields["name"],
            monthly_users=fields["monthly_users"],
            representative=Representative(**fields["representative"]),
            webhook_url=fields.get("webhook_url"),
            registered_at=now,
        )
        state = self._record(conn, None, [registered], actor, now)
        secret = generate_secret()
        sealed = self.keyring().seal(secret, platform_id)
        conn.execute(platform_secrets.insert().values(platform_id=platform_id, secret=sealed))
        return state, secret

    def update(self, actor: str, platform_id: str, sent: Mapping[str, Any]) -> PlatformState:
        """Change the fields sent; a new webhook URL re-enables delivery. Nothing changed records nothing.

        An obliged platform left without a citizen representative is refused: RepresentativeRefused if the
        request sends both users and representative (its own fault), RepresentativeConflict if the one on record
        makes the change unlawful.
        """
        if "webhook_url" in sent:
            check_webhook_url(sent["webhook_url"], self.allow_list, https_only=self.https_only)
        both_sent = {"monthly_users", "representative"} <= sent.keys()

        def work(conn: Connection) -> PlatformState:
            now = self.clock.now()
            state = self._load(conn, platform_id)
            changed = changes_of(state, dict(sent))
            if "name" in changed:
                _name_free(conn, changed["name"], platform_id)
            _check_representative(
                changed.get("monthly_users", state.monthly_users),
                changed.get("representative", state.representative),
                self.obliged_above,
                conflict=not both_sent,
            )
            if not changed:
                return state
            event = PlatformChanged(changes=recorded_changes(changed), changed_at=now)
            return self._record(conn, state, [event], actor, now)

        return self.db.run(work, retry_on=(ConcurrencyError, TransientError))

    def rotate_secret(self, actor: str, platform_id: str) -> tuple[PlatformState, str]:
        """Give a platform a new secret; the old one keeps signing beside it until the overlap ends."""

        def work(conn: Connection) -> tuple[PlatformState, str]:
            now = self.clock.now()
            state = self._load(conn, platform_id)
            # Locked, and the append checks the stream's version: two rotations cannot keep the same "previous".
            current = conn.execute(
                select(platform_secrets.c.secret).where(platform_secrets.c.platform_id == platform_id).with_for_update()
            ).scalar_one()
            secret = generate_secret()
            keyring = self.keyring()
            if keyring.needs_sealing(current):  # stored before sealing, or under a retired KEK
                current = keyring.seal(keyring.open(current, platform_id), platform_id)
            conn.execute(
                platform_secrets.update()
                .where(platform_secrets.c.platform_id == platform_id)
                .values(secret=keyring.seal(secret, platform_id), previous_secret=current)
            )
            rotated = PlatformSecretRotated(rotated_at=now, previous_valid_until=now + self.secret_overlap)
            return self._record(conn, state, [rotated], actor, now), secret

        return self.db.run(work, retry_on=(ConcurrencyError, TransientError))

    def signing_secrets(self, platform_id: str) -> list[str]:
        """The secrets the platform's pushes are signed with now: what its receiver verifies them with."""
        with self.db.read() as conn:
            found = endpoints(conn, [platform_id], self.keyring())
        if platform_id not in found:
            raise PlatformNotFound()
        return found[platform_id].signing_secrets(self.clock.now())

    def seal_stored(self) -> int:
        """Seal every plaintext secret (stored before sealing existed) or one under a retired KEK; how many rows.

        Run at the start of every process that holds the KEK, and by `takedown secrets seal`.
        """
        keyring = self.keyring()
        return self.db.run(lambda conn: reseal(conn, keyring), retry_on=(TransientError,))

    def disable_webhook(
        self, conn: Connection, platform_id: str, reason: str, now: datetime, *, actor: str = "system"
    ) -> None:
        """Stop pushing to a platform's endpoint (it answered 410 Gone), in the caller's transaction; the inbox remains."""
        state = self._load(conn, platform_id)
        self._record(conn, state, [PlatformWebhookDisabled(reason=reason, disabled_at=now)], actor, now)

    # ------------------------------------------------------------------------------------------- reads

    def get(self, platform_id: str) -> Any:
        """A platform's row, or PlatformNotFound."""
        with self.db.read() as conn:
            return get(conn, platform_id)

    def list_all(self) -> list[Any]:
        """Every platform, by name."""
        with self.db.read() as conn:
            return list_all(conn)

    def history(self, platform_id: str) -> list[dict[str, Any]]:
        """Every recorded change of a platform's registration, oldest first, with who made it."""
        with self.db.read() as conn:
            return history(conn, platform_id)

    # ---------------------------------------------------------------------------------------- helpers

    def _load(self, conn: Connection, platform_id: str) -> PlatformState:
        """The platform's state, replayed from its stream (the source of truth), or PlatformNotFound."""
        stored = self.store.read_stream(conn, stream_id(platform_id))
        state = replay(load_event(e.type, e.schema_version, e.data) for e in stored)
        if state is None:
            raise PlatformNotFound()
        return state

    def _record(
        self, conn: Connection, before: PlatformState | None, events: Sequence[Event], actor: str, now: datetime
    ) -> PlatformState:
        """Append the events, write the projection's row and publish them: the path the orders' events take."""
        state = before
        for event in events:
            state = apply(state, event)
        assert state is not None  # a stream starts with platform.registered
        meta: dict[str, Any] = {"actor": actor}
        if (request_id := current_request_id()) is not None:
            meta["request_id"] = request_id
        recorded = self.store.append(
            conn, stream_id(state.id), before.version if before else 0, [NewEvent.of(e, meta) for e in events], now
        )
        _write(conn, [state], fresh=before is None)
        view = public_view(state)
        self.bus.publish(conn, (Published(e, view) for e in recorded))
        return state
