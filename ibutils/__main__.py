"""Command line: execute chapters and build the site.

    python -m ibutils run [CHAPTER ...] [--profile quick|paper] [--timeout SECONDS]
    python -m ibutils build [--no-strict]

A CHAPTER is a notebook stem (`01_tanh_vs_relu`), a chapter id (`tanh_vs_relu`), its
number (`01`) or a path (`book/01_tanh_vs_relu.ipynb`). With no CHAPTER, every chapter
runs and the mirror `_build/src` is laid anew; with some, the other executed chapters
stay as they are.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from ibutils import execute

    parser = argparse.ArgumentParser(prog="python -m ibutils", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_run = sub.add_parser("run", help="execute chapters with papermill into _build/src")
    p_run.add_argument("chapters", nargs="*", metavar="CHAPTER")
    p_run.add_argument("--profile", choices=execute.PROFILES, default="paper",
                       help="'paper' (default): the paper's settings; 'quick': minutes, for CI")
    p_run.add_argument("--timeout", type=int, default=execute.DEFAULT_TIMEOUT,
                       help="seconds allowed per cell (default %(default)s)")

    p_build = sub.add_parser("build", help="build _build/html from _build/src with Jupyter Book")
    p_build.add_argument("--no-strict", dest="strict", action="store_false",
                         help="do not turn Sphinx warnings into errors")

    args = parser.parse_args(argv)
    if args.cmd == "run":
        return execute.run(args.chapters, profile=args.profile, timeout=args.timeout)
    return execute.build(strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
