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


#: Errors of the run itself that are reported in one line (others are bugs: traceback).
_ONE_LINE_RUNTIME_ERRORS = ("CheckpointLockedError",)


def one_line(err: BaseException) -> str:
    """An error's message on one line (a multi-line message's lines joined)."""
    lines = (line.strip() for line in str(err).splitlines())
    return " ".join(line for line in lines if line) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code.

    0 on success; 2 on a bad command or input, with one line ``groundgan COMMAND: error: ...``
    on stderr (invalid configuration or data, missing or unreadable files, no network for a
    download, a run directory in use); 130 when interrupted (run the same command again to
    resume).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(
            f"groundgan {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except RuntimeError as err:
        if type(err).__name__ not in _ONE_LINE_RUNTIME_ERRORS:
            raise
        return _fail(args.command, err)
    except (ValueError, OSError) as err:
        return _fail(args.command, err)


def _fail(command: str, err: BaseException) -> int:
    print(f"groundgan {command}: error: {one_line(err)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
