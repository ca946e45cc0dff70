"""Configuration from the environment (prefix TAKEDOWN_), with defaults that are safe only in development."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import roles
from shared.tlog.cosignature import parse_cosigner_vkey
from shared.tlog.note import NoteError


class WitnessSetting(BaseModel):
    """One witness the ledger asks for cosignatures: its name, cosignature/v1 verifier key and submission prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    vkey: str
    url: str

    @model_validator(mode="after")
    def _check(self) -> WitnessSetting:
        try:
            verifier = parse_cosigner_vkey(self.vkey)
        except NoteError as exc:
            raise ValueError(f"witness {self.name!r}: vkey is not a cosignature/v1 verifier key: {exc}") from exc
        if verifier.name != self.name:
            raise ValueError(f"witness {self.name!r}: its vkey names {verifier.name!r}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"witness {self.name!r}: url is an http(s) prefix without query, not {self.url!r}")
        return self


class Settings(BaseSettings):
    """Every knob of every service; each process reads only what it uses."""

    model_config = SettingsConfigDict(env_prefix="TAKEDOWN_", env_file=".env", extra="ignore", populate_by_name=True)

    # TAKEDOWN_ENV (or TAKEDOWN_ENVIRONMENT); production refuses plain http and unsafe defaults below.
    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias=AliasChoices("TAKEDOWN_ENV", "TAKEDOWN_ENVIRONMENT")
    )
    database_url: str = "sqlite:///./takedown.db"
    # PostgreSQL: `takedown migrate` connects with this URL (the owner, or a superuser; default: database_url) and
    # sets these login passwords for the service's roles (shared/roles.py); every other command connects with
    # database_url, as takedown_app in production.
    migrate_database_url: str | None = None
    # A streaming replica for the read side (dashboard, /v1/sla/*, the transparency report, evidence bundles);
    # default: the primary. Commands, and a client's read of what it just wrote, always go to database_url.
    read_database_url: str | None = None
    app_role_password: SecretStr | None = None
    read_role_password: SecretStr | None = None
    # Database passwords kept in files (docker secrets), by user name: a URL above whose user has none gets it from
    # here, and so do the role passwords `migrate` sets (e.g. {"takedown_app": "/run/secrets/app_db_password"}).
    db_password_files: dict[str, str] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    # Run the notifier and the sequencer inside the API process (the embedded default).
    embedded_workers: bool = True
    max_body_bytes: int = 256 * 1024
    # Threads that run the API's routes (0: four per CPU). More only contend for the interpreter lock; keep the
    # PostgreSQL pool (10 connections) at least this large, or requests open and close overflow connections.
    http_threads: int = Field(default=0, ge=0)
    # How long a process trusts an API key it has checked (0: check every request). A key revoked in another
    # process stops working here within this long; in the revoking process, at once.
    auth_cache_s: float = Field(default=5.0, ge=0)
    # An API key's `last_used_at` is written at most once per this long per key (by all processes together), and
    # only when a key is read from the table, never for a request the cache answers: precise enough to tell a key
    # in use from an abandoned one, at one small write per active key per minute.
    key_last_used_every_s: float = Field(default=60.0, ge=0)
    sla_hours: float = 24.0
    sla_category_hours: dict[str, float] = Field(default_factory=dict)
    sla_at_risk_share: float = 0.25
    # Escalation: not notified within this long of issue; still unanswered this long after the deadline; the
    # issuer's review of a contest or of declines due within this long.
    sla_notice_hours: float = 1.0
    sla_still_open_hours: tuple[float, float] = (24.0, 72.0)
    sla_review_hours: float = 72.0
    # How often the sweep looks for what fell due (escalations, at risk, breached), in every process with workers.
    sweep_interval_s: float = Field(default=15.0, gt=0)
    # Escalations are also pushed, signed, to a supervisor's webhook (not the platform's, which may be failing).
    supervisor_webhook_url: str | None = None
    supervisor_webhook_secret: SecretStr | None = None
    # Webhook destinations in private ranges are refused unless listed here (IPs or CIDRs).
    webhook_allow_list: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = 15.0
    # A claimed delivery's lease lasts webhook_timeout_s plus this margin; a dead worker's deliveries are taken
    # over by another worker once it runs out.
    webhook_lease_margin_s: float = 30.0
    # Requests in flight at once: in all, across one `takedown notifier`'s processes; and to one platform, across
    # every notifier process on PostgreSQL (the live leases are counted at each claim).
    webhook_concurrency: int = Field(default=64, ge=1)
    webhook_per_platform: int = Field(default=4, ge=1)
    # This process's share of a platform's requests (default: all of them): the supervisor of `takedown notifier`
    # splits the cap among its children so that each does its share, instead of the quickest taking every slot.
    webhook_per_platform_per_process: int | None = Field(default=None, ge=1)
    # Processes of `takedown notifier` (0: one per CPU). Each sends and records; the total above is shared out.
    notifier_processes: int = Field(default=0, ge=0)
    secret_overlap_hours: float = 24.0
    # The key-encryption key of the platforms' webhook secrets, kept outside the database: a base64 32-byte key
    # (wins), or a file (made with mode 0600 on first use, except in production, where it must exist). The retired
    # files only open secrets sealed before a rotation (`takedown secrets rotate-kek`).
    secrets_kek: SecretStr | None = None
    secrets_kek_file: str = "./secrets.kek"
    secrets_kek_retired_files: list[str] = Field(default_factory=list)
    # Platforms with more users than this are obliged by the law to name a Kazakh-citizen representative.
    obliged_monthly_users: int = Field(default=100_000, ge=0)
    public_base_url: str = "http://127.0.0.1:8000"
    # The ledger's checkpoint signing key, kept outside the database: a base64 Ed25519 seed (wins), or a file made
    # with mode 0600 on first use. The origin names the log in every checkpoint (default: public host + /ledger).
    ledger_key: SecretStr | None = None
    ledger_key_file: str = "./ledger.key"
    ledger_origin: str | None = None
    # The writer key: every append is signed with it (a base64 Ed25519 seed in a file made with mode 0600 on first
    # use, or by `takedown keys init-ledger`). It never enters the database.
    writer_key_file: str = "./writer.key"
    ledger_checkpoint_interval_s: float = Field(default=60.0, gt=0)
    # The feeder refuses an event recorded more than this before the last checkpoint signed before it is fed.
    ledger_max_lag_s: float = Field(default=300.0, gt=0)
    # The witnesses asked to cosign each checkpoint (C2SP tlog-witness): a JSON list of {"name", "vkey", "url"};
    # the log POSTs to url + "/add-checkpoint" (http is fine: a cosignature is checked, not trusted for transport).
    # Empty: the checkpoints go unwitnessed.
    ledger_witnesses: list[WitnessSetting] = Field(default_factory=list)
    # One submission's deadline, and the cap of the backoff after a witness fails (doubling from 1 s).
    ledger_witness_timeout_s: float = Field(default=5.0, gt=0)
    ledger_witness_backoff_max_s: float = Field(default=300.0, gt=0)
    # In production /metrics answers only with `Authorization: Bearer <metrics_key>` (and not at all without one);
    # /docs and /redoc are off there. Elsewhere both are open, as on a developer's machine.
    metrics_key: SecretStr | None = None
    # The metrics key from a file instead (docker secrets); metrics_key wins.
    metrics_key_file: str | None = None
    # Every background process (sequencer, scheduler, projections, ledger feeder, notifier) serves its own /metrics
    # on this port, bound to `host`, behind the same key (0: none). `takedown notifier` with N processes gives its
    # children this port and the N - 1 after it. The API serves /metrics on its own port and ignores this one.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # One JSON object per log line (for a log shipper) instead of lines for a console.
    log_json: bool = False
    # The public transparency report withholds every cell with fewer orders than this (small-cell suppression).
    transparency_min_cell: int = Field(default=5, ge=1)
    # A month's report is published (fixed in the ledger) this long after the month ends, so that late outcomes
    # land first; the scheduler looks for such months this often.
    transparency_settle_h: float = Field(default=72.0, ge=0)
    transparency_publish_interval_s: float = Field(default=3600.0, gt=0)
    # `takedown witness serve`, a C2SP tlog-witness run on its own (by a platform or an NGO): its own database (not
    # the service's), its name, its Ed25519 cosigning seed (a file made with mode 0600 on first use), and the logs it
    # witnesses as {origin: note verifier key} (TAKEDOWN_WITNESS_LOGS='{"example.com/log": "name+hash+key"}').
    witness_database_url: str = "sqlite:///./witness.db"
    witness_name: str | None = None  # default: the public base URL's host + /witness
    witness_key_file: str = "./witness.key"
    witness_logs: dict[str, str] = Field(default_factory=dict)
    # `takedown receipts serve`, a platform's receipts kit run in front of its own systems: its own SQLite file,
    # the service's API (base URL and the platform's API key), the platform's webhook secrets (several during a
    # rotation), the log's note verifier key it checks every checkpoint with, and where to forward each order.
    receipts_database_url: str = "sqlite:///./receipts.db"
    receipts_service_url: str = "http://127.0.0.1:8000"
    receipts_api_key: SecretStr | None = None
    receipts_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    receipts_log_key: str | None = None
    receipts_forward_url: str | None = None
    receipts_forward_timeout_s: float = Field(default=10.0, gt=0)
    # A pass over the log every this long; after a failed one (the feeder lags), backoff doubling from 1 s to the cap.
    receipts_poll_s: float = Field(default=10.0, gt=0)
    receipts_backoff_max_s: float = Field(default=300.0, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("ledger_witnesses")
    @classmethod
    def _distinct_witnesses(cls, value: list[WitnessSetting]) -> list[WitnessSetting]:
        names = [w.name for w in value]
        if len(set(names)) != len(names):
            raise ValueError("each witness is named once in TAKEDOWN_LEDGER_WITNESSES")
        return value

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """Fill what is kept in files (db_password_files, metrics_key_file) into the settings that use it."""
        if self.metrics_key is None and self.metrics_key_file:
            self.metrics_key = SecretStr(_read_secret(self.metrics_key_file))
        if not self.db_password_files:
            return self
        passwords = {user: _read_secret(path) for user, path in self.db_password_files.items()}
        self.database_url = _with_password(self.database_url, passwords)
        if self.migrate_database_url is not None:
            self.migrate_database_url = _with_password(self.migrate_database_url, passwords)
        if self.read_database_url is not None:
            self.read_database_url = _with_password(self.read_database_url, passwords)
        if self.app_role_password is None and roles.APP in passwords:
            self.app_role_password = SecretStr(passwords[roles.APP])
        if self.read_role_password is None and roles.READ in passwords:
            self.read_role_password = SecretStr(passwords[roles.READ])
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs PostgreSQL: set TAKEDOWN_DATABASE_URL")
            # Links in every webhook and the ledger's origin come from it; API keys travel to it.
            if not self.public_base_url.lower().startswith("https://"):
                raise ValueError(f"production needs an https public base URL, not {self.public_base_url!r}")
            if self.supervisor_webhook_url and not self.supervisor_webhook_url.lower().startswith("https://"):
                raise ValueError("production needs an https supervisor webhook URL")
            loopback = [ip_network("127.0.0.0/8"), ip_network("::1/128"), ip_network("::ffff:127.0.0.0/104")]
            for entry in self.webhook_allow_list:
                net = ip_network(entry, strict=False)
                if any(net.version == lo.version and net.overlaps(lo) for lo in loopback):
                    raise ValueError(f"production must not allow-list loopback webhook destinations ({entry})")
        return self

    def redacted(self) -> dict[str, Any]:
        """Every setting as a process logs it at start-up: secrets as '**********', passwords cut from URLs."""
        shown: dict[str, Any] = self.model_dump(mode="json")  # SecretStr fields dump as '**********'
        for name, value in shown.items():
            parts = urlsplit(value) if isinstance(value, str) and "://" in value else None
            if parts is not None and parts.password is not None:
                host = parts.netloc.rpartition("@")[2]
                shown[name] = urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
        return shown

    @property
    def production(self) -> bool:
        """Whether this process runs in production (https only, /metrics behind its key, no /docs)."""
        return self.environment == "production"


def _read_secret(path: str) -> str:
    """A secret kept in a file: its text without the surrounding whitespace (a trailing newline, typically)."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path}: {exc.strerror}") from exc
    if not secret:
        raise ValueError(f"the secret file {path} is empty")
    return secret


def _with_password(url: str, passwords: dict[str, str]) -> str:
    """`url` with its user's password from `passwords`, if the URL names a user without one."""
    parts = urlsplit(url)
    if parts.username is None or parts.password is not None or parts.username not in passwords:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(passwords[parts.username], safe='')}@{host}"))
