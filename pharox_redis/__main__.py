"""Command line entry point: ``python -m pharox_redis`` runs the demo."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the demo."""
    from .demo import main as demo_main

    return demo_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
