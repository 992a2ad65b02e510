"""The ``groundgan`` command line: ``groundgan run``, ``groundgan demo``, ``groundgan --version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="groundgan",
        description="GRN-guided simulation of single-cell RNA-seq data (GRouNdGAN).",
        epilog="Run 'groundgan COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"groundgan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import _demo, _run

    _run.add_parser(commands)
    _demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 on success, 2 on a bad command or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"groundgan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
