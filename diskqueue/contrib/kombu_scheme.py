"""Teach kombu the ``diskqueue://`` URL scheme without importing the transport.

kombu has no entry-point group for transports: it finds one by URL scheme in
``kombu.transport.TRANSPORT_ALIASES``. It does load the ``kombu.serializers`` entry
points of every installed distribution each time it is imported, so diskqueue declares
this module there: loading it adds the alias, and the transport itself
(``diskqueue.contrib.kombu``) is imported only when a connection asks for it. That is
why ``Celery(broker="diskqueue:///path")`` works with no import of ours in the app.

The entry point must hand kombu a serializer to register; :data:`SERIALIZER` is an
inert one (no encoder, no decoder), so nothing can ever be sent with it.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

SCHEME = "diskqueue"
TRANSPORT = "diskqueue.contrib.kombu:Transport"

TRANSPORT_ALIASES.setdefault(SCHEME, TRANSPORT)

# (encoder, decoder, content_type, content_encoding) for kombu's registry.register.
SERIALIZER = (None, None, "application/x-diskqueue-scheme", "binary")
