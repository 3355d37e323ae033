"""Throwaway users and groups, for tests about what another local user can do.

Tests run as root in CI; these create a real user (and group) with ``useradd``, run code as
that user through ``setpriv``, and remove both afterwards. Where the tests do not run as
root, or the tools are missing, the fixtures skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

_TOOLS = ("useradd", "userdel", "groupadd", "groupdel", "setpriv")


@dataclass(frozen=True)
class User:
    """A real local account made for one test."""

    name: str
    uid: int
    gid: int

    def run_py(self, code: str, *args: str, groups: tuple[int, ...] = (),
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run Python code as this user (and, besides its own, the given groups)."""
        return subprocess.run(self.command(code, *args, groups=groups), capture_output=True,
                              text=True, timeout=timeout, env=_env())

    def popen_py(self, code: str, *args: str,
                 groups: tuple[int, ...] = ()) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(code, *args, groups=groups), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())

    def command(self, code: str, *args: str, groups: tuple[int, ...] = ()) -> list[str]:
        extra = ",".join(str(g) for g in (self.gid, *groups))
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                f"--groups={extra}", "--", sys.executable, "-c", textwrap.dedent(code), *args]


def _env() -> dict[str, str]:
    """The environment for a dropped process: it must still import this checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["HOME"] = "/nonexistent"
    return env


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway user needs root (CI runs as root)")
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _make_user() -> User:
    name = "dqt" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/bin/false",
                    name], check=True, capture_output=True)
    import pwd

    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


def _remove_user(user: User) -> None:
    subprocess.run(["userdel", user.name], capture_output=True)
    subprocess.run(["groupdel", user.name], capture_output=True)


@pytest.fixture
def other_user() -> Iterator[User]:
    """A second local user, removed after the test."""
    _require_root()
    user = _make_user()
    try:
        yield user
    finally:
        _remove_user(user)


@pytest.fixture
def two_users() -> Iterator[tuple[User, User]]:
    """Two local users (a victim and an attacker), removed after the test."""
    _require_root()
    first, second = _make_user(), _make_user()
    try:
        yield first, second
    finally:
        _remove_user(first)
        _remove_user(second)


@pytest.fixture
def shared_group() -> Iterator[int]:
    """A throwaway group id, removed after the test."""
    _require_root()
    name = "dqg" + uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    import grp

    try:
        yield grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], capture_output=True)
