"""The storage engine: one owner per directory, every state change as one atomic batch.

Nothing here knows about sockets, handles or tasks; the layers above use it through
:class:`diskqueue.engine.api.EngineAPI`.
"""
