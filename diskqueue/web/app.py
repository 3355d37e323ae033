"""The dashboard's web application: one page, a JSON API it polls, and the checks every
request passes first (token, host, CSRF, read-only).

- With a token, every request must carry it: an ``X-Diskq-Token`` header, an
  ``Authorization: Bearer`` header, or the cookie that opening ``/?token=T`` once sets.
- Without one (loopback only), a request must name a loopback host in its ``Host``
  header, so a web page elsewhere cannot reach the dashboard by DNS rebinding.
- A POST must carry the page's CSRF token in ``X-CSRF-Token``; in read-only mode every
  POST is refused.
- The page runs no inline script (its Content-Security-Policy forbids it) and sets every
  value from a job as text, so a ``<script>`` in an argument stays text.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from typing import Any, Optional

from flask import Flask, Response, redirect, render_template, request

from ..errors import DiskQueueError
from ..tasks import UnknownJob
from .sampler import Sampler
from .source import Source

COOKIE = "diskq_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _same(given: Optional[str], wanted: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), wanted.encode())


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=repr), status=status,
                    mimetype="application/json")


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The checks made before any route runs (see the module's docstring)."""

    def __init__(self, token: Optional[str], read_only: bool) -> None:
        self.token = token
        self.read_only = read_only
        self.csrf = secrets.token_urlsafe(32)

    def check(self) -> Optional[Response]:
        """None to let the request through; else the refusal to send."""
        if self.token is None:
            if _host_name(request.host) not in LOOPBACK_NAMES:
                return _json({"error": "this dashboard answers only to a loopback host "
                                       "name; bind another host with --token"}, 403)
        else:
            given = request.args.get("token")
            if request.method == "GET" and given is not None:
                if not _same(given, self.token):
                    return _json({"error": "wrong token"}, 401)
                # a login: keep the token in a cookie and drop it from the address bar
                response = redirect(request.path)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
                return response  # type: ignore[return-value]
            header = request.headers.get("X-Diskq-Token")
            auth = request.headers.get("Authorization", "")
            bearer = auth[7:] if auth.startswith("Bearer ") else None
            cookie = request.cookies.get(COOKIE)
            if not any(_same(v, self.token) for v in (header, bearer, cookie)):
                return _json({"error": "a token is needed: open /?token=TOKEN once, or "
                                       "send the X-Diskq-Token header"}, 401)
        if request.method == "POST":
            if self.read_only:
                return _json({"error": "this dashboard is read-only"}, 403)
            if not _same(request.headers.get("X-CSRF-Token"), self.csrf):
                return _json({"error": "missing or wrong CSRF token; reload the page"}, 403)
        return None


def create_app(source: Source, sampler: Sampler, *, token: Optional[str] = None,
               read_only: bool = False, name: Optional[str] = None) -> Flask:
    """The Flask application serving the dashboard of ``source`` (called ``name``)."""
    app = Flask(__name__)
    guard = Guard(token, read_only)

    @app.before_request
    def _check() -> Optional[Response]:
        return guard.check()

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(UnknownJob)
    def _unknown(exc: UnknownJob) -> Response:
        return _json({"error": str(exc)}, 404)

    @app.errorhandler(DiskQueueError)
    @app.errorhandler(ValueError)
    @app.errorhandler(TypeError)
    def _bad(exc: Exception) -> Response:
        return _json({"error": str(exc)}, 400)

    @app.get("/")
    def index() -> str:
        return render_template("index.html", path=name or source.path, csrf=guard.csrf,
                               read_only=read_only)

    @app.get("/api/overview")
    def overview() -> Response:
        since = request.args.get("since", type=float)
        workers = sampler.workers
        return _json({"path": source.path, "now": time.time(),
                      "kind": "tasks" if source.tasks() is not None else "plain",
                      "interval": sampler.interval, "samples": sampler.since(since),
                      "workers": workers, "periodic": source.periodic(workers),
                      "read_only": read_only})

    @app.get("/api/job/<job_id>")
    def job(job_id: str) -> Response:
        return _json(source.job(job_id))

    @app.get("/api/jobs")
    def jobs() -> Response:
        after = request.args.get("after") or None
        if request.args.get("state") == "scheduled":
            rows, nxt = source.scheduled(after)
        else:
            rows, nxt = source.pending(request.args.get("queue", "default"), after)
        return _json({"jobs": rows, "next": nxt})

    @app.get("/api/items")
    def items() -> Response:
        return _json({"items": source.items(request.args.get("queue", "(default)"))})

    @app.get("/api/dead")
    def dead() -> Response:
        rows, nxt = source.dead(request.args.get("after") or None,
                                request.args.get("task", ""), request.args.get("error", ""))
        return _json({"jobs": rows, "next": nxt})

    @app.post("/api/dead/<action>")
    def act(action: str) -> Response:
        if action not in ("retry", "purge"):
            return _json({"error": f"no action {action!r}: retry or purge"}, 404)
        body = request.get_json(silent=True) or {}
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        job_id = body.get("id")
        if job_id is not None and not isinstance(job_id, str):
            return _json({"error": "id must be a string"}, 400)
        n = source.act_on_dead(action, job_id, str(body.get("task") or ""),
                               str(body.get("error") or ""))
        sampler.sample()  # the counts on the page move at once
        return _json({action: n})

    return app
