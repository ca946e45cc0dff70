"""docker-compose.yml and the Dockerfile, checked without Docker: every command, setting, file and port they name.

Each check is a function returning what is wrong (empty: nothing); the tests at the end break a copy of the parsed
file to show that each check can fail.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import AliasChoices

from services.cli import cli, notifier_drain_s
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "takedown:latest"
ONE_SHOT = "service_completed_successfully"

Compose = dict[str, Any]
Service = dict[str, Any]


def load_script() -> ModuleType:
    """ops/make_secrets.py, the documented maker of ./secrets/ (`make secrets`)."""
    spec = importlib.util.spec_from_file_location("make_secrets", ROOT / "ops" / "make_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> Compose:
    loaded: Compose = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The script run in a temporary directory: what it makes, by the file name compose gives."""
    directory = tmp_path_factory.mktemp("secrets") / "secrets"
    made = load_script().make(directory)
    return {path.name: path for path in made}


def app_services(compose: Compose) -> Iterator[tuple[str, Service]]:
    for name, service in compose["services"].items():
        if service.get("image") == IMAGE:
            yield name, service


def one_shot(compose: Compose) -> set[str]:
    """Services others wait on to complete (the migration): no healthcheck, restarted only on failure."""
    return {
        dep
        for service in compose["services"].values()
        for dep, how in (service.get("depends_on") or {}).items()
        if isinstance(how, dict) and how.get("condition") == ONE_SHOT
    }


# ------------------------------------------------------------------------------------------------- the checks


def command_problems(argv: list[str]) -> list[str]:
    """Why `argv` is not a `takedown` command this CLI accepts (sub-commands, options and their values)."""
    if not argv or argv[0] != "takedown":
        return [f"{argv}: not the takedown command"]
    # Typer's command objects (its own copy of click's): a group is what has sub-commands.
    command: Any = typer.main.get_command(cli)
    args = argv[1:]
    while getattr(command, "commands", None) is not None and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    if getattr(command, "commands", None) is not None:
        return [f"{argv}: {args[0] if args else '(nothing)'} is not a sub-command"]
    try:
        command.make_context("takedown", list(args))  # parses and checks every option, invokes nothing
    except Exception as exc:  # noqa: BLE001 - click's usage errors, whatever module they come from
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return [f"{argv}: {message}"]
    return []


def check_commands(compose: Compose) -> list[str]:
    """Every command and healthcheck the takedown image runs is a real sub-command with valid options."""
    problems = []
    for name, service in app_services(compose):
        problems += [f"{name}: {p}" for p in command_problems(service.get("command") or [])]
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[1:2] == ["takedown"]:
            problems += [f"{name} healthcheck: {p}" for p in command_problems(test[1:])]
    return problems


def setting_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(f"TAKEDOWN_{field.upper()}")
        if isinstance(info.validation_alias, AliasChoices):
            names.update(str(choice) for choice in info.validation_alias.choices)
    return names


def check_environment(compose: Compose) -> list[str]:
    """Every TAKEDOWN_* variable is a setting, and every /run/secrets/ path is a secret the service mounts."""
    known, problems = setting_names(), []
    for name, service in compose["services"].items():
        mounted = set(service.get("secrets") or [])
        for key, value in (service.get("environment") or {}).items():
            if key.startswith("TAKEDOWN_") and key not in known:
                problems.append(f"{name}: {key} is not a setting of shared/settings.py")
            if re.search(r"PASSWORD|SECRET|KEK|_KEY$", key) and not re.search(r"_FILES?$", key):
                problems.append(f"{name}: {key} is a secret given as a literal, not a file")
            if re.search(r"://[^/@:]+:[^/@]+@", str(value)):
                problems.append(f"{name}: {key} has a password in its URL")
            for secret in re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", str(value)):
                if secret not in mounted:
                    problems.append(f"{name}: {key} reads /run/secrets/{secret}, which it does not mount")
        problems += [f"{name}: secret {s} is not declared" for s in mounted - set(compose.get("secrets") or {})]
    return problems


def check_files(compose: Compose, made: set[str]) -> list[str]:
    """Every bind-mounted path is in the repository; every secret file is made by ops/make_secrets.py."""
    problems = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith(".") and not (ROOT / source).exists():
                problems.append(f"{name}: mounts {source}, which is not in the repository")
    for name, secret in (compose.get("secrets") or {}).items():
        path = Path(secret["file"])
        if path.parent != Path("secrets") or path.name not in made:
            problems.append(f"secret {name}: {secret['file']} is not made by ops/make_secrets.py into ./secrets/")
    return problems


def _port_of(service: Service) -> str | None:
    command = service.get("command") or []
    return command[command.index("--port") + 1] if "--port" in command else None


def check_ports(compose: Compose) -> list[str]:
    """The proxy's upstreams are the API services on their ports, waited for healthy; it publishes its listen port."""
    services, problems = compose["services"], []
    nginx = ROOT / "ops" / "nginx"
    upstreams = re.findall(r"^server ([\w.-]+):(\d+)", (nginx / "upstreams.conf").read_text(), flags=re.M)
    apis = {name for name, s in app_services(compose) if (s.get("command") or [None, None])[1] == "api"}
    if {host for host, _ in upstreams} != apis or len(upstreams) < 2:
        problems.append(f"the proxy's upstreams {upstreams} are not the API services {sorted(apis)}")
    proxy = services["proxy"]
    for host, port in upstreams:
        if host in services and _port_of(services[host]) != port:
            problems.append(f"upstream {host}:{port}: the service listens on {_port_of(services[host])}")
        if (proxy.get("depends_on") or {}).get(host, {}).get("condition") != "service_healthy":
            problems.append(f"the proxy does not wait for {host} to be healthy")
    listen = re.search(r"^listen (\d+);", (nginx / "listen.conf").read_text(), flags=re.M)
    published = [str(p).rsplit(":", 1)[-1] for p in proxy.get("ports") or []]
    if listen is None or published != [listen[1]]:
        problems.append(f"the proxy publishes {published}, nginx listens on {listen and listen[1]}")
    if not any(v.split(":")[1] == "/etc/nginx/takedown" for v in proxy.get("volumes") or []):
        problems.append("the proxy does not mount ops/nginx")
    if "/etc/nginx/takedown/takedown.conf" not in (proxy.get("command") or []):
        problems.append("the proxy does not run ops/nginx/takedown.conf")
    return problems


def check_health_and_restart(compose: Compose) -> list[str]:
    """Every long-running service has a healthcheck and restarts; a one-shot one restarts only on failure."""
    shots, problems = one_shot(compose), []
    for name, service in compose["services"].items():
        restart = service.get("restart")
        health = service.get("healthcheck") or {}
        if name in shots:
            if restart != "on-failure":
                problems.append(f"{name}: a one-shot service restarts on-failure, not {restart}")
            continue
        if restart not in ("always", "unless-stopped"):
            problems.append(f"{name}: no restart policy")
        if health.get("disable") or not health.get("test"):
            problems.append(f"{name}: no healthcheck")
    return problems


def _seconds(duration: str) -> float:
    found = re.fullmatch(r"(\d+)(ms|s|m)", str(duration))
    assert found is not None, duration
    return int(found[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[found[2]]


def _expand(value: str) -> str:
    """A compose value with its `${NAME:-default}` and `${NAME:?...}` interpolations as the defaults (or a stand-in)."""
    return re.sub(r"\$\{[A-Z_]+(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m[1] if m[1] is not None else "x", value)


def service_settings(service: Service, secrets: dict[str, Path], compose: Compose) -> Settings:
    """The settings a service's process reads: its environment, /run/secrets/ paths pointing at the script's files."""
    declared = (compose.get("secrets") or {}).items()
    files = {name: secrets[Path(s["file"]).name] for name, s in declared if Path(s["file"]).name in secrets}
    env = {}
    for key, value in (service.get("environment") or {}).items():
        text = _expand(str(value))
        for name, path in files.items():
            text = text.replace(f"/run/secrets/{name}", str(path))
        env[key] = text
    known = setting_names()
    fields = {}
    for key, text in env.items():
        if key not in known or key == "TAKEDOWN_ENVIRONMENT":
            continue
        field = key.removeprefix("TAKEDOWN_").lower()
        annotation = str(Settings.model_fields[field].annotation)
        fields[field] = json.loads(text) if ("dict" in annotation or "list" in annotation) else text
    return Settings(environment=env.get("TAKEDOWN_ENVIRONMENT", "development"), **fields)  # type: ignore[arg-type]


def check_stop_grace(compose: Compose, secrets: dict[str, Path]) -> list[str]:
    """Each notifier gets longer to stop than its drain: in-flight attempts finish before a SIGKILL."""
    problems = []
    for name, service in app_services(compose):
        if (service.get("command") or [None, None])[1] != "notifier":
            continue
        drain = notifier_drain_s(service_settings(service, secrets, compose))
        grace = _seconds(service.get("stop_grace_period", "10s"))
        if grace <= drain:
            problems.append(f"{name}: stop_grace_period {grace:g} s is not longer than the drain, {drain:g} s")
    return problems


# ------------------------------------------------------------------------------------------------- the tests


def test_every_command_is_a_real_takedown_sub_command(compose: Compose) -> None:
    assert check_commands(compose) == []
    commands = {tuple(s["command"][1:3]) for _, s in app_services(compose)}
    for wanted in ("api", "notifier", "scheduler", "sequencer", "migrate", "demo-receiver"):
        assert any(c[0] == wanted for c in commands), wanted
    assert ("projections", "run") in commands and ("ledger", "feeder") in commands
    replicas = [s["command"][1] for _, s in app_services(compose)]
    assert replicas.count("api") == 2 and replicas.count("notifier") == 2


def test_every_takedown_variable_is_a_setting_and_every_secret_path_mounted(compose: Compose) -> None:
    assert check_environment(compose) == []


def test_each_services_environment_makes_valid_production_settings(
    compose: Compose, secret_files: dict[str, Path]
) -> None:
    for name, service in app_services(compose):
        if not service.get("environment"):
            continue
        settings = service_settings(service, secret_files, compose)
        assert settings.production, name
        assert settings.database_url.startswith("postgresql+psycopg://takedown_app:"), name  # password from its file
        assert settings.metrics_key is not None, name
    migrate = service_settings(compose["services"]["migrate"], secret_files, compose)
    assert migrate.app_role_password is not None and migrate.read_role_password is not None


def test_every_mounted_and_secret_file_exists_or_is_made_by_the_script(
    compose: Compose, secret_files: dict[str, Path]
) -> None:
    assert check_files(compose, set(secret_files)) == []
    assert set(secret_files) == {Path(s["file"]).name for s in compose["secrets"].values()}


def test_the_secrets_script_never_replaces_a_file(tmp_path: Path) -> None:
    script = load_script()
    first = script.make(tmp_path / "s")
    kept = {p.name: p.read_text() for p in first}
    assert script.make(tmp_path / "s") == []
    assert {p.name: p.read_text() for p in first} == kept
    assert all(len(text.strip()) >= 32 for text in kept.values())
    assert (tmp_path / "s").stat().st_mode & 0o077 == 0


def test_proxy_upstreams_match_the_api_services_and_ports(compose: Compose) -> None:
    assert check_ports(compose) == []


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose: Compose) -> None:
    assert check_health_and_restart(compose) == []
    assert one_shot(compose) == {"migrate"}


def test_the_notifiers_stop_grace_period_outlasts_their_drain(compose: Compose, secret_files: dict[str, Path]) -> None:
    assert check_stop_grace(compose, secret_files) == []


def test_the_replica_streams_from_the_primary(compose: Compose) -> None:
    replica = compose["services"]["postgres-replica"]
    script = (ROOT / "ops" / "postgres" / "replica-entrypoint.sh").read_text()
    assert replica["environment"]["PRIMARY_HOST"] in compose["services"]
    assert "pg_basebackup" in script and " -R" in script
    assert "pg_is_in_recovery" in " ".join(replica["healthcheck"]["test"])
    read_url = compose["services"]["api-1"]["environment"]["TAKEDOWN_READ_DATABASE_URL"]
    assert "@postgres-replica:5432/" in read_url


def dockerfile_problems(text: str) -> list[str]:
    """The image runs as a user other than root and has a HEALTHCHECK that is a real takedown command."""
    problems = []
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image runs as root (USER {users[-1] if users else 'missing'})")
    health = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(.+)$", text, flags=re.M)
    if health is None:
        problems.append("no HEALTHCHECK")
    else:
        argv = json.loads(health[1]) if health[1].startswith("[") else shlex.split(health[1])
        problems += command_problems(argv)
    cmd = re.search(r"^CMD\s+(\[.+\])$", text, flags=re.M)
    problems += command_problems(json.loads(cmd[1])) if cmd else ["no CMD"]
    return problems


def test_the_dockerfile_runs_unprivileged_with_a_healthcheck() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


# ----------------------------------------------------------------------------------- each check can fail


def test_the_checks_find_a_broken_copy(compose: Compose, secret_files: dict[str, Path]) -> None:
    broken = json.loads(json.dumps(compose))  # not deepcopy: it would keep api-1 and api-2 one shared dict
    services = broken["services"]
    services["scheduler"]["command"] = ["takedown", "schedular"]
    services["sequencer"]["command"] = ["takedown", "sequencer", "--fast"]
    services["api-2"]["healthcheck"] = {"test": ["CMD", "takedown", "healthcheck", "--htp", "x"]}
    assert len(check_commands(broken)) == 3, check_commands(broken)

    services["scheduler"]["environment"] = {
        "TAKEDOWN_SWEEP_INTERVAL": "5",
        "TAKEDOWN_LEDGER_KEY_FILE": "/run/secrets/nope",
    }
    assert len(check_environment(broken)) == 2, check_environment(broken)

    services["postgres"]["volumes"] = ["./ops/postgres/missing.sh:/x.sh:ro"]
    broken["secrets"]["ledger_key"] = {"file": "./ledger.key"}
    assert len(check_files(broken, set(secret_files))) == 2

    services["api-1"]["command"] = ["takedown", "api", "--host", "0.0.0.0", "--port", "8001"]
    services["proxy"]["ports"] = ["80:80"]
    assert len(check_ports(broken)) == 2, check_ports(broken)

    del services["ledger-feeder"]["healthcheck"]
    services["projections"]["restart"] = "no"
    assert len(check_health_and_restart(broken)) == 2, check_health_and_restart(broken)

    services["notifier-1"]["stop_grace_period"] = "20s"
    services["notifier-2"]["environment"] = {
        **services["notifier-2"]["environment"],
        "TAKEDOWN_WEBHOOK_TIMEOUT_S": "60",
    }
    assert len(check_stop_grace(broken, secret_files)) == 2, check_stop_grace(broken, secret_files)


def test_the_dockerfile_check_finds_root_and_a_missing_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_problems(text.replace("USER 10001:10001", "USER root")) != []
    assert dockerfile_problems(re.sub(r"^HEALTHCHECK.*$", "", text, flags=re.M)) == ["no HEALTHCHECK"]
    assert dockerfile_problems(text.replace('"healthcheck"]', '"healthz"]')) != []
