"""The hash-locked requirements: every package pinned with hashes; the image's runtime lock agrees with make's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Each locked package: its version and the hashes of its files."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    text = re.sub(r"\s*#.*", "", lock.read_text())  # comments out; continuation lines joined below
    for entry in text.replace("\\\n", " ").splitlines():
        if not entry.strip():
            continue
        name_version, *options = entry.split()
        name, _, version = name_version.partition("==")
        name = name.split("[")[0]
        assert version, f"{lock.name}: {name_version} is not pinned with =="
        hashes = frozenset(o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:"))
        found[canonicalize_name(name)] = (version, hashes)
    return found


def test_every_locked_package_is_pinned_with_hashes() -> None:
    for lock in ("requirements.lock", "requirements-runtime.lock"):
        locked = pins(ROOT / lock)
        assert locked and all(hashes for _, hashes in locked.values()), lock


def test_the_runtime_lock_is_the_full_locks_runtime_part_at_the_same_versions() -> None:
    full, runtime = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-runtime.lock")
    assert {name: full.get(name) for name in runtime} == runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert direct <= set(runtime)
    extras = {canonicalize_name(Requirement(r).name) for rs in project["optional-dependencies"].values() for r in rs}
    assert extras <= set(full)
    assert not {"pytest", "mypy", "playwright"} & set(runtime)  # the image carries no test tooling


def test_make_and_the_image_install_only_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements.lock" in makefile
    assert not re.search(r"pip install (?!.*--require-hashes)(?!.*--no-deps).*", makefile), "an unlocked install"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-runtime.lock" in dockerfile
    assert not re.search(r"pip install (?!.*--require-hashes)(?!.*--no-deps).*", dockerfile)
