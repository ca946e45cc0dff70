"""Every error a service raises to the edge has its entry in the one table, problems.SERVICE_ERRORS."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import services
import shared
from services.http.problems import SERVICE_ERRORS, Problem, problem_type
from services.orders.errors import OrderError
from shared.errors import CodedError, ServiceError

# Errors that never reach a route: each is caught where it is raised or stops a process, never a request.
NEVER_AT_THE_EDGE = {
    "services.http.problems.Problem",  # the edge's own error, already a problem
    "services.ledger.errors.LedgerGap",  # stops the ledger feeder, which retries; no request waits on it
    "services.ledger.errors.NotQuarantinable",  # only `takedown ledger quarantine` asks for one
    "services.ledger.errors.SigningKeyError",  # refuses to start the app without a usable key
    "shared.tlog.merkle.ProofError",  # a proof that does not verify: the offline verifier's verdict
    "shared.tlog.note.NoteError",  # a note that does not verify: the offline verifier's verdict
    "shared.tlog.policy.PolicyError",  # a --witness or --quorum the verify commands refuse as a usage error
    "services.ledger.rotation.RotationError",  # a key rotation that does not verify: the verifier's verdict
    # A configured origin that is not the stored one, or a key file that is not the chain's key: resolved when the
    # ledger starts (Ledger.start, every ledger command), a misconfiguration that stops the process.
    "services.ledger.errors.LedgerIdentityError",
    "services.ledger.bundle._Invalid",
    # The receipts kit records the log's inconsistencies as alerts and retries failed fetches; a statement that does
    # not verify is the offline verifier's verdict: none reaches a route.
    "services.receipts.errors.LogInconsistency",
    "services.receipts.errors.FetchFailed",
    "services.receipts.errors.StatementInvalid",  # a bundle that does not verify: the offline verifier's verdict
    # A missing or wrong KEK: every serving process opens it when it starts (sealing plaintext secrets) and stops.
    "services.registry.errors.SecretsKeyError",
    "shared.eventstore.store.DuplicateEventError",  # an event id reused with other content: a programming error
    "shared.eventstore.writer.WriterKeyError",  # an unusable writer key stops the process at start-up
}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_classes() -> list[type[Exception]]:
    """Every exception class defined in a module of services/ or shared/ (each module imported)."""
    found: dict[str, type[Exception]] = {}
    for package in (services, shared):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, Exception) and cls.__module__ == info.name:
                    found[_name(cls)] = cls
    return sorted(found.values(), key=_name)


def bases(classes: list[type[Exception]]) -> set[type[Exception]]:
    """The base errors: shared.errors' and each package's (derived from ServiceError directly, or the root of a
    family of its own, like the store's), which no route raises as such."""
    collected = set(classes)
    roots = {
        cls
        for cls in collected
        if not any(b in collected for b in cls.__mro__[1:]) and any(issubclass(o, cls) for o in collected - {cls})
    }
    return roots | {cls for cls in collected if ServiceError in cls.__bases__}


def unmapped(classes: list[type[Exception]], roots: set[type[Exception]]) -> list[str]:
    """The errors that would leave the API as a 500: no entry of their own or of a class between them and the base."""
    missing = []
    for cls in classes:
        if cls in roots or _name(cls) in NEVER_AT_THE_EDGE:
            continue
        if problem_type(cls) is None:
            missing.append(_name(cls))
    return missing


def test_every_service_error_maps_to_a_problem() -> None:
    classes = error_classes()
    assert len(classes) > 20  # the walk found the packages' errors, not nothing
    assert unmapped(classes, bases(classes)) == []


def test_no_base_error_is_in_the_table() -> None:
    # A base in the table would map every new subclass silently to its status; each subclass is chosen instead.
    classes = error_classes()
    roots = bases(classes)
    assert {OrderError, ServiceError, CodedError} <= roots
    assert not roots & set(SERVICE_ERRORS)


def test_the_table_names_only_errors_of_services_and_shared() -> None:
    assert {c.__module__.split(".")[0] for c in SERVICE_ERRORS} <= {"services", "shared"}
    assert Problem not in SERVICE_ERRORS


def test_the_exemptions_still_exist() -> None:
    # An exemption that no longer names a class would hide nothing, but would mislead the reader.
    assert {_name(c) for c in error_classes()} >= NEVER_AT_THE_EDGE


def test_a_new_subclass_without_an_entry_is_found() -> None:
    class Forgotten(OrderError):
        code = "forgotten"

    classes = [*error_classes(), Forgotten]
    assert unmapped(classes, bases(classes)) == [_name(Forgotten)]


def test_each_errors_module_has_one_base() -> None:
    """A package's errors.py derives every error from one base class defined there."""
    modules = sorted(Path(services.__file__).parent.glob("*/errors.py"))
    assert len(modules) >= 5
    for path in modules:
        module = importlib.import_module(f"services.{path.parent.name}.errors")
        defined = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Exception) and c.__module__ == module.__name__
        ]
        roots = [c for c in defined if not any(b in defined for b in c.__mro__[1:])]
        assert len(roots) == 1, f"{module.__name__}: {[r.__name__ for r in roots]}"
