"""Adapters that let other task frameworks use a diskqueue directory as their broker.

Each module here needs its framework installed (an extra: ``pip install
'diskqueue[celery]'`` or ``'diskqueue[dramatiq]'``); nothing in the rest of the package
imports them.
"""
