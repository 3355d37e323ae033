"""The command-line tools: ``diskq`` (admin) and ``diskq-worker`` (worker)."""

from .admin import main

__all__ = ["main"]
