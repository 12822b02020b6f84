"""Command line entry point: ``python -m pharox_redis`` (see :mod:`pharox_redis.cli`)."""

from __future__ import annotations

from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
