"""Takes from a client process and the notes it keeps of them, when a disk is full
(or the process is out of file descriptors).

Each client process notes the takes it hands out in a file of its own in the
directory (see ``diskqueue.engine.handed``); a next holder reads it before it puts
back a take it held for a client that died, so that a take handed out never comes
back. These tests fill the disk with ``RLIMIT_FSIZE`` (for that process no file may
grow), for the client or for the holder.
"""

from __future__ import annotations

import signal
import time

import pytest
from faults import SPEND_EVERY_DESCRIPTOR, Child
from test_confirm_on_full_disk import HOLDER as FULL_DISK_HOLDER
from test_handed_out import CLIENT, FULL_DISK_CLIENT, HOLDER, _end, _notes_of, _settled

import diskqueue as dq

# test_handed_out's client (its codec stops the holder while the reply is decoded, so
# that the "got it" lands unread), whose own disk is full: for good, or at first, when
# its takes through another handle are refused (its notes cannot be made).
TAKE = "value = q.pop() if kind is dq.Stack else q.dequeue()"
NO_ROOM = """
import resource
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk is an error, not a death
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
"""
REFUSED = "print('refused', 'disk is full' in str(exc), flush=True)"
FULL_AT_FIRST = NO_ROOM + f"""
first = kind(sys.argv[1], codec="json")
for _ in range(2):
    try:
        print("took", first.dequeue().value, flush=True)
    except dq.DiskQueueError as exc:
        {REFUSED}
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # room again
{TAKE}
"""
FULL = NO_ROOM + f"""
try:
    {TAKE}
except dq.DiskQueueError as exc:
    {REFUSED}
    time.sleep(120)
"""
assert TAKE in CLIENT
CLIENT_FULL_AT_FIRST = CLIENT.replace(TAKE, FULL_AT_FIRST)
CLIENT_FULL = CLIENT.replace(TAKE, FULL)


@pytest.mark.timeout(60)
def test_a_client_takes_again_once_its_disk_has_room(tmp_path):
    """Its first takes met a full disk, where its file of notes could not be made; the
    process used to note nothing for the rest of its life, so a take it handed out
    later came back after its holder and then it died."""
    lines = _handover(str(tmp_path / "q"), CLIENT_FULL_AT_FIRST, 3)
    assert lines == ["refused True", "refused True", "handed out first"]


@pytest.mark.timeout(60)
def test_a_client_with_no_room_for_its_notes_hands_no_take_out(tmp_path):
    """A take that could not be noted, handed out all the same, came back when its
    holder and then its client died; now it is refused, and nothing is lost."""
    lines = _handover(str(tmp_path / "q"), CLIENT_FULL, 1)
    assert lines == ["refused True"]


# The same client, out of file descriptors at its first takes (its notes cannot be
# made), on a connection it opened before; then they are back.
OUT_OF_DESCRIPTORS_AT_FIRST = f"""
first = kind(sys.argv[1], codec="json")
len(first)  # its connection is open: the take needs no new descriptor for it
{SPEND_EVERY_DESCRIPTOR}
for _ in range(2):
    try:
        print("took", first.dequeue().value, flush=True)
    except dq.DiskQueueError as exc:
        print("refused", "nothing was taken" in str(exc), flush=True)
for fd in spent:
    os.close(fd)
{TAKE}
"""
CLIENT_OUT_OF_DESCRIPTORS_AT_FIRST = CLIENT.replace(TAKE, OUT_OF_DESCRIPTORS_AT_FIRST)


@pytest.mark.timeout(60)
def test_a_client_out_of_descriptors_for_its_notes_hands_no_take_out(tmp_path):
    """A client that could not open its file of notes for want of a descriptor took it
    for a file it may not make, and handed its takes out unnoted: they came back when
    its holder and then it died. Now such a take is refused, as on a full disk."""
    lines = _handover(str(tmp_path / "q"), CLIENT_OUT_OF_DESCRIPTORS_AT_FIRST, 3)
    assert lines == ["refused True", "refused True", "handed out first"]


def _handover(path: str, code: str, n: int) -> list[str]:
    """Run the client until it wrote ``n`` lines, kill its holder (stopped while the
    client read its last take, if any) and then it, and open the directory: what was
    handed out must not come back, and nothing may be lost. The client's lines."""
    holder = Child(HOLDER, path, "Queue")
    client = None
    try:
        holder.wait_lines(1)
        client = Child(code, path, "Queue")
        lines = client.wait_lines(n)
        holder.kill()  # the client's "got it" (or "put back") is still unread
        client.kill()  # before it could settle with another holder
    finally:
        _end(holder, client)
    taken = [line.split()[-1] for line in lines if line.split()[0] in ("took", "handed")]
    with dq.Queue(path, codec="json") as q:
        assert q.role == "owner"
        _settled(q)  # a take may stay held a moment, but never comes back
        left = [item.value for item in q]
    assert not set(taken) & set(left)
    assert sorted(taken + left) == ["first", "second", "third"]
    with dq.Queue(path, codec="json") as q:  # nor at the next open
        assert [item.value for item in q] == left
    return lines


# test_confirm_on_full_disk's holder, whose full disk takes no write at all (a fresh log
# after a failed write would take a few), and which looks for the notes of clients that
# ended at each of its checks (about once a second) instead of every ten seconds.
NOTHING_WRITTEN_HOLDER = (
    "from diskqueue.engine import inherited\ninherited.LEDGER_SWEEP_EVERY = 0.0\n"
    + FULL_DISK_HOLDER.replace("(size, resource.RLIM_INFINITY)", "(0, resource.RLIM_INFINITY)"))
assert NOTHING_WRITTEN_HOLDER.count("(0, resource.RLIM_INFINITY)") == 1


@pytest.mark.timeout(60)
def test_the_notes_of_a_client_whose_confirmation_is_unwritten_outlive_it(tmp_path):
    """The holder reads a client's "got it" and cannot write it; the client ends while
    the disk is still full, and the holder dies before it could write it: the next
    holder needs the client's notes to know it had the item, so the holder that still
    meant to write the confirmation must not delete them when it deletes the notes of
    clients that ended."""
    _client_ends_before_its_confirmation_is_written(
        str(tmp_path / "q"), NOTHING_WRITTEN_HOLDER, FULL_DISK_CLIENT, 0)


# The same holder, which stops reading its connections once sent SIGHUP: a client that
# dies then is dead for its checks while its connection's end is still to be read (what
# happens when a client dies between the loop's look at its sockets and its check).
DEAF_ON_SIGHUP = """
from diskqueue.sharing import server
deaf = []
_read = server.Server._read
server.Server._read = lambda self, client: False if deaf else _read(self, client)
signal.signal(signal.SIGHUP, lambda *_: deaf.append(True))
q = dq.Queue(path)
"""
assert NOTHING_WRITTEN_HOLDER.count("\nq = dq.Queue(path)\n") == 1
UNREAD_END_HOLDER = NOTHING_WRITTEN_HOLDER.replace("\nq = dq.Queue(path)\n", DEAF_ON_SIGHUP)
DIE = """
os.kill(holder, signal.SIGHUP)
time.sleep(0.3)
os.kill(os.getpid(), signal.SIGKILL)
"""
DYING_CLIENT = FULL_DISK_CLIENT.replace("q.close()", DIE)
assert DYING_CLIENT.count("SIGHUP") == 1


@pytest.mark.timeout(60)
def test_the_notes_of_a_dead_client_outlive_it_until_its_connection_is_read(tmp_path):
    """As above, but the client dies before the holder read the end of its connection,
    where its confirmation, still unwritten, would be handed over to be written later:
    the holder's checks, meanwhile, deleted its notes, and after the holder died the next
    one handed the item out again (a soak delivered three items twice so)."""
    _client_ends_before_its_confirmation_is_written(
        str(tmp_path / "q"), UNREAD_END_HOLDER, DYING_CLIENT, -signal.SIGKILL)


def _client_ends_before_its_confirmation_is_written(
        path: str, holder_code: str, client_code: str, rc: int) -> None:
    """The client takes an item and says "got it" to a holder whose disk is full, then
    ends (exit code ``rc``); its notes must outlive it, and after the holder dies too the
    item must not come back."""
    holder = Child(holder_code, path)
    client = None
    try:
        holder.wait_lines(1)
        client = Child(client_code, path, str(holder.proc.pid))
        assert client.finish() == (rc, ["handed out"])
        time.sleep(2.5)  # two of the holder's checks, the disk still full
        assert _notes_of(path, client.proc.pid)  # kept for the next holder
    finally:
        _end(holder, client)  # the confirmation still unwritten
    with dq.Queue(path) as q:
        _settled(q)
        assert list(q) == []  # the item does not come back
