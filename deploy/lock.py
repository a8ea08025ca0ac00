"""`python -m deploy.lock` (what `make lock` runs): re-pin both lock files from the installed environment.

requirements.lock gets the closure of pyproject's runtime `dependencies` (what the production image
installs); requirements-dev.lock gets everything the optional groups (`local`, `dev`) add on top.
Run it in a virtualenv where pyproject's direct pins are installed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_HEADER = (
    "# What the services need at run time (the production image installs only this); every package pinned.\n"
    "# Regenerate both lock files with `make lock`.\n"
)
DEV_HEADER = (
    "# Development on top of the runtime pins: the local broker and database, tests, lint (`make` installs both).\n"
    "-r requirements.lock\n"
)


def installed_closure(requirements: Iterable[str]) -> dict[str, str]:
    """Every installed distribution `requirements` pull in (extras and markers applied): name -> version."""
    pinned: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        key = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - extras_seen.get(key, set())
        if key in pinned and not new_extras:
            continue
        distribution = metadata.distribution(requirement.name)
        pinned[key] = f"{distribution.metadata['Name']}=={distribution.version}"
        extras = extras_seen.setdefault(key, set())
        extras |= new_extras
        for text in distribution.requires or []:
            dependency = Requirement(text)
            markers = [{"extra": extra} for extra in ("", *sorted(extras))]
            if dependency.marker is None or any(dependency.marker.evaluate(m) for m in markers):
                pending.append(dependency)
    return pinned


def write_lock_files(root: Path = ROOT) -> tuple[int, int]:
    """Rewrite both lock files; how many pins each holds."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime = installed_closure(project["dependencies"])
    optional = [pin for group in project["optional-dependencies"].values() for pin in group]
    everything = installed_closure([*project["dependencies"], *optional])
    dev = {key: pin for key, pin in everything.items() if key not in runtime}
    (root / "requirements.lock").write_text(RUNTIME_HEADER + "".join(f"{runtime[k]}\n" for k in sorted(runtime)))
    (root / "requirements-dev.lock").write_text(DEV_HEADER + "".join(f"{dev[k]}\n" for k in sorted(dev)))
    return len(runtime), len(dev)


if __name__ == "__main__":
    runtime_pins, dev_pins = write_lock_files()
    print(f"requirements.lock: {runtime_pins} pins, requirements-dev.lock: {dev_pins} more")
