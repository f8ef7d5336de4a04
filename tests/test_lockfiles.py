"""The lockfiles match pyproject.toml: ``requirements.lock`` (what ``make test`` installs)
pins every dependency inside its range, and ``requirements-lowest.lock`` (``make
test-lowest``) pins each direct one at the lowest version its range allows. After editing
the dependencies, ``make lock`` re-pins both."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]
            + project["optional-dependencies"]["dev"]]


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            found[canonicalize_name(package)] = Version(version.split(";")[0].strip())
    return found


@pytest.mark.parametrize("lockfile", ["requirements.lock", "requirements-lowest.lock"])
def test_every_dependency_is_pinned_inside_its_range(lockfile):
    pinned = pins(lockfile)
    for req in direct_requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in {lockfile}: run `make lock`"
        assert pinned[name] in req.specifier, (
            f"{lockfile} pins {req.name}=={pinned[name]}, outside {req}: run `make lock`")


def test_the_lowest_lock_pins_each_direct_dependency_at_its_floor():
    pinned = pins("requirements-lowest.lock")
    for req in direct_requirements():
        floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        assert floors, f"{req} has no lower bound"
        # the lowest release inside the range: the floor itself, or its first patch release
        lowest, floor = pinned[canonicalize_name(req.name)], max(floors)
        assert lowest.release[:len(floor.release)] == floor.release, (
            f"requirements-lowest.lock pins {req.name}=={lowest}, not the floor of {req}: "
            "run `make lock`")
