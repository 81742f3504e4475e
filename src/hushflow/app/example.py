"""The bundled telemetry-block example (the story in the README), shipped as package data.

`hushflow run` with no flow source replays it: its two policies (the FQDN deny as the team wrote
it, and the namespace's egress allows) and the Hubble flows recorded for it. In the repository
the files live in ``examples/telemetry-block/``; the package's ``example/`` links to them, and a
built wheel carries copies.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def example_dir() -> Path | None:
    """The installed example's directory (policies/ and flows.jsonl), or None when this
    installation does not carry it."""
    path = Path(str(files("hushflow").joinpath("example")))
    if (path / "flows.jsonl").is_file() and (path / "policies").is_dir():
        return path
    return None
