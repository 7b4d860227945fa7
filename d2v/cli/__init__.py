"""The `d2v` command line.

Subcommands live in `d2v/cli/commands/<name>.py`; each module defines `register(subparsers)` which
adds its parser and sets `func=<callable(args) -> int>`. They are discovered at start-up, so adding
a command touches no shared file. Errors a user can act on (`D2VError`, missing files) print one
line and exit 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import d2v
from d2v import cpu_arithmetic
from d2v.cli import commands
from d2v.errors import D2VError

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d2v",
        description="data2vec 1.0/2.0 for images, speech and text: data, pretraining, "
        "evaluation, reports and artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"d2v {d2v.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before any command imports torch: one CPU arithmetic path on every machine (d2v/cpu_arithmetic.py).
    cpu_arithmetic.pin()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except (D2VError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        print(f"d2v {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"d2v {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
