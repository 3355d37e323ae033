"""``diskq-worker``: run the tasks of a TaskQueue against a directory. A thin shell over
``TaskQueue.run()``: parse, validate, import ``--app``, run.

Exit codes: 0 stopped (or drained) with every started job finished; 1 a diskqueue
error; 2 bad usage; 3 the app could not be imported; 4 stopped with jobs still running at
the end of the grace period (they run again on the next start).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import DiskQueueError
from ..tasks import TaskQueue
from ..tasks.worker.worker import POOLS, check_queues

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APP = 3
EXIT_UNFINISHED = 4

LOG_LEVELS = ("debug", "info", "warning", "error")

EPILOG = """examples:
  diskq-worker data/jobs --app myapp.tasks:tasks
      run until SIGTERM or Ctrl-C, 4 threads, every queue
  diskq-worker data/jobs --app myapp.tasks:tasks --drain
      run every job left in data/jobs, then exit 0 (a progress bar on a terminal)
  diskq-worker data/jobs --app myapp.tasks:tasks --pool process --concurrency 8
      CPU-bound tasks in 8 child processes; a task's timeout kills its child
  diskq-worker data/jobs --app myapp.tasks:tasks --queues high,low
      serve "high" first, "low" only when "high" is empty
  diskq-worker data/jobs --app myapp.tasks:tasks --queues high=3,low=1
      weighted: try "high" first 3 times out of 4
  diskq-worker data/jobs --app myapp.tasks:tasks --metrics-port 9108
      also serve Prometheus metrics at http://127.0.0.1:9108/metrics

exit codes: 0 done, 1 diskqueue error, 2 bad usage, 3 --app cannot be imported,
4 stopped with jobs still running after --grace (they run again on the next start)
"""


class AppError(Exception):
    """Raised when ``--app`` cannot be imported or is not a TaskQueue."""


@dataclass(frozen=True)
class Config:
    path: str
    app: str
    concurrency: int
    pool: str
    queues: Optional[dict[str, float]]
    grace: float
    drain: bool
    log_level: str
    metrics_port: Optional[int] = None
    metrics_host: str = "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diskq-worker",
        description="Run the tasks registered on a diskqueue TaskQueue against a directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="the task directory")
    parser.add_argument("--app", required=True, metavar="MODULE:ATTR",
                        help="the TaskQueue holding the tasks, e.g. myapp.tasks:tasks "
                             "(the current directory is on the import path)")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N",
                        help="jobs run at once: threads, coroutines or child processes "
                             "(default: 4)")
    parser.add_argument("--pool", choices=POOLS, default="thread",
                        help="thread (default), process (CPU-bound tasks, enforced "
                             "timeouts) or async (async def tasks on an event loop)")
    parser.add_argument("--queues", metavar="A,B",
                        help="queues to serve: 'a,b' in strict order, or 'a=3,b=1' by "
                             "weight (default: every queue)")
    parser.add_argument("--grace", type=float, default=30.0, metavar="S",
                        help="on SIGTERM/SIGINT, seconds running jobs get to finish "
                             "(default: 30)")
    parser.add_argument("--drain", action="store_true",
                        help="exit 0 once no job is left (ready, running or scheduled); "
                             "shows a progress bar on a terminal")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", metavar="L",
                        help="debug, info (default), warning or error")
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve Prometheus metrics on port N (0: any free port, logged) "
                             "while the worker runs; needs pip install 'diskqueue[metrics]'")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="the address the metrics are served on (default: 127.0.0.1)")
    return parser


def _queues(text: Optional[str]) -> Optional[dict[str, float]]:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--queues names no queue")
    if any("=" in part for part in names):
        weights: dict[str, float] = {}
        for part in names:
            name, sep, weight = part.partition("=")
            if not sep:
                raise ValueError(f"--queues: give every queue a weight, or none ({part!r})")
            try:
                weights[name.strip()] = float(weight)
            except ValueError:
                raise ValueError(f"--queues: {weight!r} is not a number") from None
        return check_queues(weights)
    return check_queues(names)


def config(args: argparse.Namespace) -> Config:
    """Validate the parsed arguments (ValueError/TypeError: bad usage)."""
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, not {args.concurrency}")
    if not args.grace >= 0:
        raise ValueError(f"--grace must be >= 0, not {args.grace}")
    if args.app.count(":") != 1 or not all(args.app.split(":")):
        raise ValueError(f"--app must look like module:attr, not {args.app!r}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ValueError(f"--metrics-port must be 0 to 65535, not {args.metrics_port}")
    return Config(args.path, args.app, args.concurrency, args.pool, _queues(args.queues),
                  args.grace, args.drain, args.log_level, metrics_port=args.metrics_port,
                  metrics_host=args.metrics_host)


def load_app(spec: str) -> TaskQueue:
    """Import ``module:attr`` and return the TaskQueue it names."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: B036 - any failure of the app's import
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise AppError(f"cannot import {module_name!r} (from --app {spec}): {detail}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"{module_name!r} has no attribute {attr!r} (from --app {spec})"
                           ) from None
    if not isinstance(obj, TaskQueue):
        raise AppError(f"--app {spec} is a {type(obj).__name__}, not a diskqueue TaskQueue")
    return obj


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = config(args)
    except (ValueError, TypeError) as exc:
        parser.print_usage(sys.stderr)
        print(f"diskq-worker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if cfg.metrics_port is not None:
        from ..metrics import MetricsUnavailable, require

        try:
            require()
        except MetricsUnavailable as exc:
            print(f"diskq-worker: --metrics-port: {exc}", file=sys.stderr)
            return EXIT_USAGE
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        tasks = load_app(cfg.app)
    except AppError as exc:
        print(f"diskq-worker: {exc}", file=sys.stderr)
        return EXIT_APP
    try:
        tasks.set_path(cfg.path)
        clean = tasks.run(concurrency=cfg.concurrency, pool=cfg.pool, queues=cfg.queues,
                          grace=cfg.grace, drain=cfg.drain, app=cfg.app,
                          metrics_port=cfg.metrics_port, metrics_host=cfg.metrics_host)
        tasks.close()
    except DiskQueueError as exc:
        print(f"diskq-worker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as exc:
        print(f"diskq-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if clean else EXIT_UNFINISHED


if __name__ == "__main__":
    sys.exit(main())
