"""``python -m sluice.local up|down``: the local stack without the ``sluice`` entry point."""

from __future__ import annotations

import argparse
import sys

from sluice.local.stack.commands import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.local", allow_abbrev=False)
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
