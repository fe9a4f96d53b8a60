"""``python -m tocsin``: the command line (being written)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tocsin: the command line is being written", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
