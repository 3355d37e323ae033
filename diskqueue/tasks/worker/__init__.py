"""Running jobs: the worker, its runners, pools and scheduler."""
