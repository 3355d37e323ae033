"""The engine's written interface (``EngineAPI``) is what both engines offer and what the
wire binds to: every method is on the owner's Engine and on the client with the same
parameters, the wire's table and signatures come from it, a request that names an
argument wrongly is refused with a clear ``TypeError``, and every flag a client passes
reaches the holder under its own name. Real processes, a real socket.
"""

from __future__ import annotations

import ast
import inspect
import socket
import time

import faults
import pytest
from test_sharing import holding

import diskqueue as dq
from diskqueue.engine.api import LOCAL_ONLY, EngineAPI, HolderAPI, WireAPI
from diskqueue.engine.engine import Engine
from diskqueue.sharing import protocol, requests
from diskqueue.sharing.client import RemoteEngine


def _methods(api: type) -> dict[str, inspect.Signature]:
    """The public methods a Protocol declares (its own and its bases'), by name."""
    found = {}
    for klass in reversed(api.__mro__):
        if klass in (HolderAPI, EngineAPI, WireAPI):
            for name, value in vars(klass).items():
                if inspect.isfunction(value) and not name.startswith("_"):
                    found[name] = inspect.signature(value)
    return found


@pytest.mark.parametrize("name", sorted(_methods(HolderAPI)))
def test_the_owners_engine_has_every_method_with_the_interfaces_parameters(name):
    wanted = _methods(HolderAPI)[name]
    got = inspect.signature(getattr(Engine, name))
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in wanted.parameters.values()], name


@pytest.mark.parametrize("name", sorted(_methods(EngineAPI)))
def test_the_client_has_every_method_with_the_interfaces_signature(name):
    wanted = _methods(EngineAPI)[name]
    got = inspect.signature(getattr(RemoteEngine, name))
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in wanted.parameters.values()], name


def test_the_wire_table_and_signatures_are_the_interfaces():
    wire = _methods(WireAPI)
    assert requests.METHODS == set(wire)
    for name, sig in wire.items():
        names = [p for p in sig.parameters if p != "self" and p not in LOCAL_ONLY]
        assert list(requests.wire_signature(name).parameters) == names, name


def test_both_engines_have_the_interfaces_attributes(tmp_path):
    path = str(tmp_path / "q")
    with dq.Queue(path) as q:
        owner = q._engine
        assert isinstance(owner, Engine) and owner.role == "owner"
        with holding(str(tmp_path / "other")), dq.Queue(str(tmp_path / "other")) as c:
            client = c._engine
            assert isinstance(client, RemoteEngine) and client.role == "client"
            for engine in (owner, client):
                for attr in ("path", "closed", "forked", "refs", "pid", "role"):
                    assert hasattr(engine, attr), (type(engine).__name__, attr)


class _Raw:
    """A bare connection to a holder, sending requests as a client of another
    implementation might."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(f"{path}/{protocol.SOCKET_NAME}")
        self.reader = protocol.FrameReader(self.sock)

    def ask(self, request: list[object]) -> list[object]:
        self.sock.sendall(protocol.pack(request))
        reply = self.reader.read()
        self.sock.sendall(protocol.pack("got it"))
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("request_, says", [
    (["pop_one", [b"", b""], {"blok": True}], "blok"),  # a renamed flag
    (["pop_one", [b"", b"", False], {"desc": True}], "desc"),  # given twice
    (["pop_one", [b"", b""], {"timeout": True}], "timeout"),  # a flag where a number goes
    (["push_one", [b"", b"", b"x", 1, True, 0.1, "extra"], {}], "too many"),
    (["take_first", [[b""]], {"owner": "me"}], "owner"),  # the holder's own argument
    (["confirm", [[], []], {}], "delivered"),  # a required flag left out
])
def test_a_misnamed_argument_is_refused_with_a_clear_type_error(tmp_path, request_, says):
    path = str(tmp_path / "q")
    with holding(path) as holder:
        raw = _Raw(path)
        try:
            ok, kind, message = raw.ask(request_)
            assert (ok, kind) == (1, "TypeError"), message
            assert says in str(message) and request_[0] in str(message), message
            assert raw.ask(["length", [b""], {}]) == [0, 0]  # the connection serves on
        finally:
            raw.close()
        assert holder.proc.poll() is None


# The holder writes each request as the wire bound it: method and arguments by name.
RECORDING_HOLDER = r"""
import sys, time, diskqueue as dq
from diskqueue.sharing import requests, server
real = requests.parse
def parse(request):
    bound = real(request)
    print(repr((bound.method, bound.arguments)), flush=True)
    return bound
requests.parse = parse
q = dq.Queue(sys.argv[1])
print("role", q.role, flush=True)
time.sleep(600)
"""

# The required arguments of each method that has flags, and a value for each flag that
# is not its default.
CALLS = {
    "push_one": [b"", b"", b"d"], "push": [b"", [(b"", b"d")]],
    "push_run": [b"", b"", [b"d"]], "push_unless": [b"", [(b"", b"d")], (b"g", b"k")],
    "take": [b"", 1], "take_run": [b"", b"", 1], "take_first": [[b""]],
    "pop_one": [b"", b""], "ack": [b"", b"", 1], "nack": [b"", b"", 1], "peek": [b"", 0],
    "lanes": [b""], "scan": [b""], "join": [b""], "scan_records": [b"", b"", None],
    "confirm": [[], []], "ack_each": [[]],
}
FLAG_VALUES = {
    "maxsize": 5, "block": True, "timeout": 0.05, "records": [[b"r", b"k", b"v"]],
    "lane": b"l", "desc": True, "from_tail": True, "lease": 30.0, "attempts": 3,
    "front": False, "after": [b"", 0], "limit": 7, "delivered": True,
    "guarded": [[b"r", b"k", None, []]],
}


def _flags() -> list[tuple[str, str]]:
    return [(method, p.name) for method, sig in _methods(WireAPI).items()
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in LOCAL_ONLY]


def test_every_flag_a_client_passes_reaches_the_holder_by_name(tmp_path):
    assert {m for m, _ in _flags()} == set(CALLS)
    path = str(tmp_path / "q")
    holder = faults.Child(RECORDING_HOLDER, path)
    try:
        assert holder.wait_lines(1, timeout=30) == ["role owner"]
        with dq.Queue(path) as q:
            assert q.role == "client"
            engine = q._engine
            for method, flag in _flags():
                value = FLAG_VALUES[flag]
                extra = {"timeout": 0.05} if flag == "block" else {}
                if method == "confirm" and flag != "delivered":
                    extra["delivered"] = False
                seen = len(holder.lines)
                try:
                    getattr(engine, method)(*CALLS[method], **{flag: value}, **extra)
                except (dq.DiskQueueError, ValueError, KeyError):
                    pass  # what the call does is not the point: how it arrived is
                deadline = time.monotonic() + 10
                while len(holder.lines) == seen and time.monotonic() < deadline:
                    time.sleep(0.01)
                calls = [ast.literal_eval(line) for line in holder.lines[seen:]]
                bound = next(args for name, args in calls if name == method)
                sent = [list(v) if isinstance(v, tuple) else v for v in [value]][0]
                got = bound[flag]
                assert (list(got) if isinstance(got, tuple) else got) == sent, \
                    (method, flag, bound)
    finally:
        holder.kill()
    assert b"Traceback" not in holder.stderr, holder.stderr.decode()[-3000:]


def test_flags_passed_by_a_client_take_effect_in_the_holder(tmp_path):
    path = str(tmp_path / "q")
    with holding(path, "PriorityQueue"), dq.PriorityQueue(path) as pq, \
            dq.PriorityQueue(path, order="desc", maxsize=3) as high_first:
        assert pq.role == "client"
        pq.enqueue_many([(1, "low"), (1, "low 2"), (9, "high"), (5, "mid")])
        assert pq.peek().value == "low"
        assert high_first.peek().value == "high"  # desc travels by name
        assert high_first.dequeue().value == "high"
        item = pq.reserve(lease=30)  # lease travels by name
        assert pq.in_flight() == 1
        pq.nack(item, front=False)  # so does front
        assert pq.in_flight() == 0
        assert [i.value for i in pq] == ["low 2", "low", "mid"]
        started = time.monotonic()
        with pytest.raises(dq.Full):  # maxsize, block and timeout, by name
            high_first.put((7, "over"), block=True, timeout=0.3)
        assert time.monotonic() - started >= 0.25
    with holding(str(tmp_path / "s"), "Stack"), dq.Stack(str(tmp_path / "s")) as st:
        st.push_many(["below", "top"])
        assert st.pop().value == "top"  # from_tail travels by name
        assert st.pop().value == "below"
        started = time.monotonic()
        with pytest.raises(dq.Empty):
            st.pop(block=True, timeout=0.3)
        assert time.monotonic() - started >= 0.25
