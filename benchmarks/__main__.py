"""``python -m benchmarks``: run the harness (see ``benchmarks.cli``)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
