"""Who may read and write a queue: the directory's mode, its files, what others planted.

A queue holds whatever an application puts in it, so the directory a queue creates is
``0700`` whatever the umask, and ``mode=`` shares it with a group on purpose (``0o770``;
its files are then ``0o660``). LevelDB creates its files itself with ``0666 & ~umask``
and cannot be told otherwise, so the directory's mode is what keeps them private; the
files found when the directory is opened are brought down to the directory's file mode
as well. The files diskqueue writes itself are created under a private random name with
``O_EXCL | O_NOFOLLOW`` and renamed into place, so a symbolic link planted in a shared
directory is never followed.
"""

from __future__ import annotations

import os
import secrets
import stat
import warnings

from ..errors import DiskQueueError, PermissionDenied, SharedDirectoryWarning

DEFAULT_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_warned: set[str] = set()  # directories warned about in this process


def check_mode(mode: object) -> int:
    """Validate a ``mode=`` argument: the owner's rwx, group bits, setgid; no more."""
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int such as 0o700, not {type(mode).__name__}")
    if mode & ~0o2770 or mode & 0o700 != 0o700:
        raise ValueError(
            f"mode must give the owner rwx (0o700) and may add group bits and setgid "
            f"(up to 0o2770; a queue is never shared with every user), not {mode:#o}"
        )
    return mode


def file_mode(dir_mode: int) -> int:
    """The mode of the files in a directory of ``dir_mode``: its read/write bits."""
    return dir_mode & 0o666


def denied(path: str, detail: str) -> PermissionDenied:
    """The error for a directory this process may not read or write."""
    return PermissionDenied(
        f"{path}: permission denied ({detail}). Opening a queue writes to its directory "
        "even to only read items (LevelDB takes its LOCK file and starts a new log), so "
        "this user needs read and write access to the directory and its files: check "
        f"the owner and mode (ls -la {path}), or open it as the user who created it. "
        "This is not damage: do not run diskq repair"
    )


def prepare_directory(path: str, mode: int = DEFAULT_MODE, *, warn: bool = True) -> None:
    """Create ``path`` with exactly ``mode`` (whatever the umask), or check the existing
    one: warn once when it lets the group or others in beyond ``mode``."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise DiskQueueError(f"{path} exists and is not a directory; pick another path")
    try:
        try:
            os.mkdir(path, 0o700)  # never wider than 0700 before the chmod below
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)  # parents: as mkdir -p
            os.mkdir(path, 0o700)
    except FileExistsError:
        if warn:
            _warn_if_shared(path, mode)
        return
    except PermissionError as exc:
        raise denied(path, f"cannot create the directory: {exc.strerror}") from exc
    except OSError as exc:
        raise DiskQueueError(f"cannot create directory {path}: {exc.strerror}") from exc
    os.chmod(path, mode)


def _warn_if_shared(path: str, mode: int) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    extra = st.st_mode & 0o077 & ~mode
    if not extra or path in _warned:
        return
    _warned.add(path)
    who = " and ".join(name for name, bits in (("its group", 0o070), ("other users", 0o007))
                       if extra & bits)
    can = " and ".join(verb for verb, bits in (("read", 0o044), ("change", 0o022))
                       if extra & bits) or "enter"
    warnings.warn(
        f"{path} has mode {stat.S_IMODE(st.st_mode):#o}: {who} can {can} the items in it. "
        f"Run `chmod {mode:o} {path}`, or pass mode= to share it on purpose (see the "
        "security page of the docs)",
        SharedDirectoryWarning, stacklevel=4,
    )


def check_entries(path: str) -> None:
    """Refuse a directory holding what nobody trusted could have put there: a symbolic
    link (diskqueue and LevelDB never make one, and LevelDB would write through it), or,
    in a directory only its owner may write, a file of a third user."""
    try:
        names = os.listdir(path)
        dir_st = os.stat(path)
    except PermissionError as exc:
        raise denied(path, f"cannot list the directory: {exc.strerror}") from exc
    except OSError:
        return
    trusted = {os.geteuid(), dir_st.st_uid, 0}
    private = not dir_st.st_mode & 0o022
    for name in names:
        full = os.path.join(path, name)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise DiskQueueError(
                f"{full} is a symbolic link; diskqueue never makes one, so someone else "
                f"put it there and LevelDB would write through it. Remove it, and check "
                f"who can write to {path}"
            )
        if private and st.st_uid not in trusted:
            raise DiskQueueError(
                f"{full} belongs to user {st.st_uid}, who may not write to {path}: it was "
                "put there while the directory was open to others, and may have been "
                f"changed. Check it, and remove it or chown it to the directory's owner"
            )


def set_file_modes(path: str) -> None:
    """Give this user's files in ``path`` the directory's file mode: LevelDB created them
    with ``0666 & ~umask``, wider than a private directory's ``0600``, and narrower than
    the ``0660`` a group needs to take a shared directory over (its LOCK file)."""
    try:
        wanted = file_mode(os.stat(path).st_mode)
        names = os.listdir(path)
    except OSError:
        return
    uid = os.geteuid()
    for name in names:
        full = os.path.join(path, name)
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) != wanted:
                os.chmod(full, wanted, follow_symlinks=False)
        except (OSError, NotImplementedError):
            continue  # gone meanwhile (a compaction), or not ours to change


def write_file(path: str, name: str, text: str) -> None:
    """Write a small file of ours into place: first under a private random name that no
    one can have planted (``O_EXCL | O_NOFOLLOW``), then renamed over ``name`` (a rename
    replaces a symbolic link found there, never its target)."""
    mode = file_mode(os.stat(path).st_mode)
    tmp = os.path.join(path, f".{name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(path, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_file(path: str, name: str, limit: int = 64) -> str | None:
    """The text of a small regular file of the directory (never through a link, never
    blocking on a FIFO someone put there), or None."""
    try:
        fd = os.open(os.path.join(path, name),
                     os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
