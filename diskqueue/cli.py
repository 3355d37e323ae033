"""``diskq``: the admin command. A thin shell over the library.

Exit codes: 0 done, 1 a diskqueue error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Optional

from . import engine as engine_mod
from .errors import DiskQueueError
from .handle import check_path
from .repair import repair

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

EPILOG = """examples:
  diskq repair data/q          salvage a directory that raised Corrupted
  diskq stats data/q --json    item counts, for scripts
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diskq", description="Inspect and repair diskqueue directories.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rep = sub.add_parser("repair", help="run LevelDB's repair and rebuild the queue pointers")
    rep.add_argument("path", help="the queue directory")
    rep.add_argument("--json", action="store_true", help="print the result as JSON")
    stats = sub.add_parser("stats", help="show ready and reserved item counts")
    stats.add_argument("path", help="the queue directory")
    stats.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _stats(path: str) -> dict[str, Any]:
    engine = engine_mod.acquire(path)
    try:
        return engine.info()
    finally:
        engine.release()


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = check_path(args.path)
        result: dict[str, Any]
        if args.command == "repair":
            result = dict(repair(path))
            text = f"repaired {path}: {result['items']} items kept, " \
                   f"{result['lanes_rebuilt']} lanes rebuilt"
        else:
            result = _stats(path)
            text = "\n".join(
                f"{ns or '(default)'}: {c['ready']} ready, {c['reserved']} reserved"
                for ns, c in result.items()
            ) or f"{path}: empty"
    except DiskQueueError as exc:
        print(f"diskq: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result) if args.json else text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
