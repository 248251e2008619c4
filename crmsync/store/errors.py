"""Errors raised by the state store.

`StoreError` is for problems the operator can fix (a database from a newer crmsync, a
missing or unreadable file, a PostgreSQL server that cannot be reached) and is printed
without a traceback. `IllegalTransitionError` is a bug in the caller (a sync run moved
out of order), so it is a plain `ValueError`. `IntegrityError` is a write a constraint
refused (a unique key, a foreign key, a CHECK), whichever engine holds the state.
"""

from __future__ import annotations

import sqlite3

from crmsync.errors import CrmsyncError


class StoreError(CrmsyncError):
    """The state database cannot be used as asked; the message says why and what to do."""


class IllegalTransitionError(ValueError):
    """A sync run was asked to move to a state its current state cannot reach."""


class IntegrityError(sqlite3.IntegrityError):
    """A constraint refused a write, on SQLite or PostgreSQL.

    A subclass of `sqlite3.IntegrityError`, so code written against the SQLite store
    (`except sqlite3.IntegrityError`) catches PostgreSQL's refusals too.
    """
