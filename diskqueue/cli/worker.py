"""``diskq-worker``: run the tasks of a TaskQueue against its directory. A thin shell over
``TaskQueue.run()``: parse, validate, import ``--app``, set up logging, run.

The directory is the app's own (the path its ``TaskQueue`` was built with), so producers
and the worker cannot drift apart: a PATH given on the command line must name the same
directory, and one that does not exist yet is created only with ``--create``.

Exit codes: 0 stopped (or drained) with every started job finished; 1 a diskqueue
error; 2 bad usage; 3 the app could not be imported; 4 stopped with jobs still running at
the end of the grace period (they run again on the next start).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Optional, Union

from .._version import __version__
from ..errors import DiskQueueError
from ..tasks import TaskQueue
from ..tasks.worker.worker import POOLS, check_queues

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APP = 3
EXIT_UNFINISHED = 4

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

EPILOG = """examples:
  diskq-worker --app myapp.tasks:tasks
      run until SIGTERM or Ctrl-C, 4 threads, every queue, in the app's own directory
  diskq-worker data/jobs --app myapp.tasks:tasks --create
      the same, naming the directory (it must be the app's) and creating it if missing
  diskq-worker --app myapp.tasks:tasks --drain
      run every job left, then exit 0 (a progress bar on a terminal)
  diskq-worker --app myapp.tasks:tasks --pool process --concurrency 8
      CPU-bound tasks in 8 child processes; a task's timeout kills its child
  diskq-worker --app myapp.tasks:tasks --queues high,low
      serve "high" first, "low" only when "high" is empty
  diskq-worker --app myapp.tasks:tasks --queues high=3,low=1
      weighted: try "high" first 3 times out of 4
  diskq-worker data/jobs --app myapp.tasks:tasks --metrics-port 9108
      also serve Prometheus metrics at http://127.0.0.1:9108/metrics

exit codes: 0 done, 1 diskqueue error, 2 bad usage (PATH not the app's directory, or
missing without --create, among others), 3 --app cannot be imported,
4 stopped with jobs still running after --grace (they run again on the next start)
"""


class AppError(Exception):
    """Raised when ``--app`` cannot be imported or is not a TaskQueue."""


class PathError(Exception):
    """Raised when PATH is not the app's directory, or is missing without ``--create``."""


Queues = Optional[Union[list[str], dict[str, float]]]


@dataclass(frozen=True)
class Config:
    """The validated options of one ``diskq-worker`` run, one field per option."""

    path: Optional[str]
    app: str
    concurrency: int
    pool: str
    queues: Queues
    grace: float
    drain: bool
    log_level: str
    log_format: str = "text"
    create: bool = False
    metrics_port: Optional[int] = None
    metrics_host: str = "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diskq-worker",
        description="Run the tasks registered on a diskqueue TaskQueue against a directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="?", metavar="PATH",
                        help="the task directory; it must be the one the app's TaskQueue "
                             "was built with (default: that one)")
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
    parser.add_argument("--create", action="store_true",
                        help="create the task directory if it does not exist (without it, a "
                             "missing directory is an error: a typo is not an empty queue)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", metavar="L",
                        help="level of diskqueue's own log lines: debug, info (default), "
                             "warning or error")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (default), or json: one object per line, for log "
                             "shippers (used only when the app sets up no logging itself)")
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve Prometheus metrics on port N (0: any free port, logged) "
                             "while the worker runs; needs pip install 'diskqueue[metrics]'")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="the address the metrics are served on (default: 127.0.0.1)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _queues(text: Optional[str]) -> Queues:
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
        check_queues(weights)
        return weights
    check_queues(names)
    return names  # a list means strict order; the worker checks it again as given


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
                  args.grace, args.drain, args.log_level, args.log_format, args.create,
                  metrics_port=args.metrics_port, metrics_host=args.metrics_host)


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


def task_directory(cfg: Config, tasks: TaskQueue) -> str:
    """The directory to serve: the app's own; PATH, if given, must name the same one."""
    own = tasks.path
    if cfg.path is not None and os.path.realpath(cfg.path) != own:
        raise PathError(
            f"PATH {cfg.path} is not the directory of --app {cfg.app} ({own}): producers "
            f"that import the app would enqueue into {own}, which this worker would never "
            f"see. Leave PATH out, or build the app's TaskQueue with this path (e.g. from "
            f"an environment variable)")
    if not os.path.isdir(own) and not cfg.create:
        raise PathError(f"{own} does not exist (the directory of --app {cfg.app}); give "
                        f"--create to start an empty task directory there")
    return own


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, with the job's fields when the record has them."""
        out: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        for key in ("job_id", "task", "queue", "attempt", "duration"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        return json.dumps(out, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """Set diskqueue's log level; add a handler only if the app set up no logging."""
    logging.getLogger("diskqueue").setLevel(level.upper())
    root = logging.getLogger()
    if root.handlers:
        return  # the app's own setup wins: its handlers, its format, its root level
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``diskq-worker`` with ``argv`` (default: the command line); returns the exit
    code (see the ``EXIT_*`` constants)."""
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
    try:
        tasks = load_app(cfg.app)
    except AppError as exc:
        print(f"diskq-worker: {exc}", file=sys.stderr)
        return EXIT_APP
    setup_logging(cfg.log_level, cfg.log_format)
    try:
        task_directory(cfg, tasks)
    except PathError as exc:
        parser.print_usage(sys.stderr)
        print(f"diskq-worker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
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
