"""Command line: execute chapters and build the site.

    python -m ibutils run [CHAPTER ...] [--profile quick|paper] [--timeout SECONDS]
    python -m ibutils build [--no-strict]

A CHAPTER is a notebook stem (`01_tanh_vs_relu`), a chapter id (`tanh_vs_relu`), its
number (`01`) or a path (`book/01_tanh_vs_relu.ipynb`). With no CHAPTER, every chapter
runs and the mirror `_build/src` is laid anew; with some, the other executed chapters
stay as they are.

A mistake in what was asked for (an unknown chapter or profile, a wrong IBUTILS_DATA) or a
full disk ends the command with one line saying what is wrong and how to fix it, and a
non-zero exit status: 2 for a mistake, 1 for a failed chapter or a full disk, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import errno
import sys

from ibutils import execute

PROG = "python -m ibutils"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_run = sub.add_parser("run", help="execute chapters with papermill into _build/src")
    p_run.add_argument("chapters", nargs="*", metavar="CHAPTER")
    # checked by execute.check_profile, whose message lists the profiles in one line
    p_run.add_argument("--profile", default="paper",
                       help="'paper' (default): the paper's settings; 'quick': minutes, for CI")
    p_run.add_argument("--timeout", type=int, default=execute.DEFAULT_TIMEOUT,
                       help="seconds allowed per cell (default %(default)s)")

    p_build = sub.add_parser("build", help="build _build/html from _build/src with Jupyter Book")
    p_build.add_argument("--no-strict", dest="strict", action="store_false",
                         help="do not turn Sphinx warnings into errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "run":
            return execute.run(args.chapters, profile=args.profile, timeout=args.timeout)
        return execute.build(strict=args.strict)
    except execute.UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"{PROG}: error: no space left on the device holding {exc.filename or 'the build folder'}: "
              "free some space and run again", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
