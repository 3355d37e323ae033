"""What a user reads: a directory opened as the wrong kind says what it holds in the
names the user types, and ``help()`` on a structure shows real docstrings."""

from __future__ import annotations

import pydoc
from pathlib import Path

import pytest

import diskqueue as dq

try:
    from .test_tasks_support import diskq, run_worker, write_app
except ImportError:
    from test_tasks_support import diskq, run_worker, write_app


def test_a_queue_directory_opened_as_a_task_queue_names_both_classes(tmp_path: Path) -> None:
    with dq.Queue(tmp_path / "q") as q:
        q.put(1)
    with dq.TaskQueue(tmp_path / "q") as tasks, pytest.raises(dq.IncompatibleType) as info:
        tasks.enqueue("anything")
    text = str(info.value)
    assert "holds a Queue or Stack, not a TaskQueue" in text
    assert "structure" not in text and "a tasks" not in text


def test_a_task_directory_opened_as_a_priority_queue(tmp_path: Path) -> None:
    with dq.TaskQueue(tmp_path / "jobs") as tasks:
        tasks.enqueue("anything")
    with pytest.raises(dq.IncompatibleType, match="holds a TaskQueue, not a PriorityQueue"):
        dq.PriorityQueue(tmp_path / "jobs")


def test_the_worker_on_a_queue_directory_says_so_in_one_line(tmp_path: Path) -> None:
    with dq.Queue(tmp_path / "q") as q:
        q.put(1)
    app = write_app(tmp_path)
    done = run_worker(tmp_path / "q", f"{app}:tasks", "--drain", cwd=tmp_path)
    assert done.returncode != 0
    assert "holds a Queue or Stack, not a TaskQueue" in done.stderr
    assert "Traceback" not in done.stderr
    assert diskq("stats", str(tmp_path / "q")).returncode == 0  # the queue is untouched


@pytest.mark.parametrize("cls", [dq.Queue, dq.Stack, dq.PriorityQueue, dq.PrefixQueue])
def test_help_shows_docstrings_not_section_comments(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "# --" not in text and "common reads" not in text
    assert "The number of ready items" in text  # __len__'s own docstring
    for name in ("__len__", "__bool__", "__enter__", "__exit__", "__repr__", "closed"):
        assert getattr(cls, name).__doc__, name
