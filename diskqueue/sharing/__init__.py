"""Many processes on one directory: the holder's socket server, its clients, the wire."""
