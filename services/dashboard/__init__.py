"""The dashboard page: static HTML, CSS and vanilla JavaScript, committed as they are served (no build step)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
