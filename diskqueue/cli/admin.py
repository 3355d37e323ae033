"""``diskq``: the admin command. A thin shell over the library.

Exit codes: 0 done, 1 a diskqueue error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from typing import Any, Optional

from .._checks import check_path
from .._version import __version__
from ..engine.repair import repair
from ..errors import DiskQueueError
from ..sharing import registry as engine_mod

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

EPILOG = """examples:
  diskq repair data/q          salvage a directory that raised Corrupted
  diskq stats data/q --json    item counts, for scripts
  diskq stats data/jobs        per-queue job counts and latency of a task directory
  diskq peek data/jobs -n 5    the next five jobs, without taking them
  diskq dead data/jobs         dead jobs and the error each one died of
  diskq retry data/jobs --all  put every dead job back in its queue
  diskq purge data/jobs ID     delete one dead job for good
  diskq metrics data/jobs --port 9108
                               serve its gauges to Prometheus (needs diskqueue[metrics])
  diskq dashboard data/jobs    a web page of the queues, jobs and workers on port 8686
"""


def _add(sub: Any, name: str, help_text: str, *, json_help: str = "print the result as JSON"
         ) -> argparse.ArgumentParser:
    cmd = sub.add_parser(name, help=help_text, description=help_text)
    cmd.add_argument("path", help="the queue or task directory")
    cmd.add_argument("--json", action="store_true", help=json_help)
    return cmd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diskq", description="Inspect and repair diskqueue directories.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add(sub, "repair", "run LevelDB's repair and rebuild the queue pointers")
    _add(sub, "stats", "show ready and reserved item counts (task directories: job counts "
                       "and latency per queue)")
    peek = _add(sub, "peek", "show the next items or jobs without taking them")
    peek.add_argument("-n", "--limit", type=int, default=10, metavar="N",
                      help="how many to show per queue (default: 10)")
    peek.add_argument("--queue", metavar="NAME",
                      help="only this queue of a task directory (default: every queue)")
    dead = _add(sub, "dead", "list the dead jobs of a task directory, with their errors")
    dead.add_argument("-n", "--limit", type=int, default=50, metavar="N",
                      help="how many to show, most recent first (default: 50)")
    dead.add_argument("--traceback", action="store_true",
                      help="also print each error's traceback")
    for name, verb in (("retry", "put dead jobs back in their queues"),
                       ("purge", "delete dead jobs for good")):
        cmd = _add(sub, name, f"{verb} (one by id, or all with --all)")
        cmd.add_argument("job_id", nargs="?", metavar="JOB_ID", help="the dead job to act on")
        cmd.add_argument("--all", action="store_true", help="act on every dead job")
    metrics = sub.add_parser("metrics", help="serve Prometheus gauges of a directory (any "
                             "process may hold it) until Ctrl-C", description="serve "
                             "Prometheus gauges of a directory until Ctrl-C")
    metrics.add_argument("path", help="the queue or task directory")
    metrics.add_argument("--port", type=int, required=True, metavar="N",
                         help="the port to serve http://HOST:N/metrics on (0: any free one)")
    metrics.add_argument("--host", default="127.0.0.1", metavar="HOST",
                         help="the address to serve on (default: 127.0.0.1)")
    _dashboard_parser(sub)
    return parser


def _dashboard_parser(sub: Any) -> None:
    cmd = sub.add_parser("dashboard", help="serve a web dashboard of the directory "
                         "(needs pip install 'diskqueue[web]')",
                         description="Serve a web page of the queues, jobs, dead letters "
                         "and workers of PATH until interrupted.")
    cmd.add_argument("path", help="the queue or task directory")
    cmd.add_argument("--host", default="127.0.0.1",
                     help="the address to bind (default: 127.0.0.1; any other needs a token)")
    cmd.add_argument("--port", type=int, default=8686, help="the port (default: 8686)")
    cmd.add_argument("--token", help="a secret every request must carry (default: the "
                     "DISKQ_DASHBOARD_TOKEN environment variable); open /?token=T to log in")
    cmd.add_argument("--read-only", action="store_true",
                     help="show, but never retry or purge (the buttons are hidden)")


def _dashboard(args: argparse.Namespace, path: str) -> int:
    from ..web import serve

    try:
        serve(path, host=args.host, port=args.port, token=args.token, read_only=args.read_only,
              name=args.path)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        print(f"diskq: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _stats(path: str) -> dict[str, Any]:
    engine = engine_mod.acquire(path)
    try:
        return engine.info()  # type: ignore[no-any-return]
    finally:
        engine.release()


def _is_tasks(path: str) -> bool:
    from ..tasks import layout as records

    engine = engine_mod.acquire(path)
    try:
        return engine.get_record(records.NS_META, b"format") is not None
    finally:
        engine.release()


def _when(stamp: Optional[float]) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def _task_stats(tasks: Any) -> tuple[Any, str]:
    result = tasks.stats()
    if not result:
        return result, f"{tasks.path}: no queues yet"
    head = ("queue", "depth", "scheduled", "in-flight", "dead", "done", "failed",
            "p50 ms", "p99 ms")
    rows = [head] + [
        (name, str(s["depth"]), str(s["scheduled"]), str(s["in_flight"]), str(s["dead"]),
         str(s["done"]), str(s["failed"]), _ms(s["latency_p50_ms"]), _ms(s["latency_p99_ms"]))
        for name, s in result.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return result, "\n".join(lines)


def _job_line(info: dict[str, Any]) -> str:
    if "coded" in info:  # arguments stored by a TaskQueue's codec=, unknown here
        call = f"<arguments in the {info['coded']} codec>"
    else:
        call = ", ".join([json.dumps(a, default=repr) for a in info.get("args", [])]
                         + [f"{k}={json.dumps(v, default=repr)}"
                            for k, v in info.get("kwargs", {}).items()])
    return (f"{info['id']}  {info['queue']}  {info['task']}({call})  {info['state']}"
            f"  priority={info.get('priority') or 0}  attempts={info.get('attempts', 0)}")


def _peek(path: str, tasks: Any, limit: int, queue: Optional[str]) -> tuple[Any, str]:
    if tasks is None:
        from .. import codecs

        engine = engine_mod.acquire(path)
        try:
            _, loads = codecs.resolve("msgpack")
            found: dict[str, list[Any]] = {}
            for ns in engine.info():
                values = []
                for entry in engine.scan(ns.encode("utf-8"), limit=limit):
                    try:
                        values.append(loads(entry[3]))
                    except Exception:
                        values.append(repr(bytes(entry[3])))
                found[ns] = values
        finally:
            engine.release()
        text = "\n".join(f"{ns or '(default)'}: {json.dumps(v, default=repr)}"
                         for ns, vs in found.items() for v in vs)
        return found, text or f"{path}: empty"
    names = [queue] if queue is not None else tasks.queue_names()
    jobs = {name: [job.info() for job in tasks.pending(name, limit)] for name in names}
    jobs["(scheduled)"] = [job.info() for job in tasks.scheduled(limit)]
    lines = []
    for infos in jobs.values():
        for info in infos:
            due = f"  due {_when(info['eta'])}" if info.get("eta") else ""
            lines.append(_job_line(info) + due)
    return jobs, "\n".join(lines) or f"{path}: no job waiting"


def _dead(tasks: Any, limit: int, with_tb: bool) -> tuple[Any, str]:
    infos = [job.info() for job in tasks.dead()[:limit]]
    lines = []
    for info in infos:
        err = info.get("error") or {}
        lines.append(f"{_job_line(info)}  died {_when(info.get('finished'))}: "
                     f"{err.get('type', '?')}: {err.get('message', '')}")
        if with_tb and err.get("traceback"):
            lines.append("    " + err["traceback"].rstrip().replace("\n", "\n    "))
    return infos, "\n".join(lines) or "no dead jobs"


def _task_command(args: argparse.Namespace, path: str) -> tuple[Any, str]:
    from ..tasks import TaskQueue

    is_tasks = _is_tasks(path)
    if not is_tasks and args.command in ("dead", "retry", "purge"):
        raise DiskQueueError(f"{path} is not a task directory (no TaskQueue ever used it)")
    if not is_tasks:
        if getattr(args, "queue", None) is not None:
            raise DiskQueueError(f"{path} holds a plain queue, not a task directory: --queue "
                                 "names a queue of a task directory; leave it out")
        return _peek(path, None, args.limit, None)
    with TaskQueue(path) as tasks:
        if args.command == "stats":
            return _task_stats(tasks)
        if args.command == "peek":
            return _peek(path, tasks, args.limit, args.queue)
        if args.command == "dead":
            return _dead(tasks, args.limit, args.traceback)
        act = tasks.retry_dead if args.command == "retry" else tasks.purge_dead
        n = act(args.job_id)
        verb = "put back" if args.command == "retry" else "purged"
        return {args.command: n}, f"{verb} {n} dead job{'s' if n != 1 else ''}"


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``diskq`` with ``argv`` (default: ``sys.argv[1:]``); return its exit code.

    ``EXIT_OK`` (0) when done, ``EXIT_ERROR`` (1) for a diskqueue error (its message on
    stderr); bad usage exits through ``SystemExit`` with ``EXIT_USAGE`` (2), as argparse
    does. Library errors never escape as tracebacks.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("retry", "purge") and (args.job_id is None) == (not args.all):
        parser.error(f"{args.command}: give either JOB_ID or --all")
    if getattr(args, "limit", 1) < 0:
        parser.error("--limit must be >= 0")
    if not 0 <= getattr(args, "port", 0) <= 65535:
        parser.error("--port must be 0 to 65535")
    try:
        path = check_path(args.path)
        if args.command != "repair" and not os.path.exists(path):
            # an inspection command must not create a directory where a typo pointed it
            raise DiskQueueError(f"{path} does not exist")
        result: Any
        if args.command == "metrics":
            from ..metrics.server import run_directory

            run_directory(path, args.port, args.host, lambda line: print(line, flush=True))
            return EXIT_OK
        if args.command == "dashboard":
            return _dashboard(args, path)
        if args.command == "repair":
            result = dict(repair(path))
            text = f"repaired {path}: {result['items']} items kept, " \
                   f"{result['lanes_rebuilt']} lanes rebuilt"
        elif args.command == "stats" and not _is_tasks(path):
            result = _stats(path)
            text = "\n".join(
                f"{ns or '(default)'}: {c['ready']} ready, {c['reserved']} reserved"
                for ns, c in result.items()
            ) or f"{path}: empty"
        else:
            result, text = _task_command(args, path)
    except ValueError as exc:  # a job that is not dead
        print(f"diskq: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DiskQueueError as exc:
        print(f"diskq: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result, default=repr) if args.json else text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
