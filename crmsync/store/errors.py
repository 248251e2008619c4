"""Errors raised by the state store.

`StoreError` is for problems the operator can fix (a database from a newer crmsync, a
missing or unreadable file) and is printed without a traceback. `IllegalTransitionError`
is a bug in the caller (a sync run moved out of order), so it is a plain `ValueError`.
"""

from __future__ import annotations

from crmsync.errors import CrmsyncError


class StoreError(CrmsyncError):
    """The state database cannot be used as asked; the message says why and what to do."""


class IllegalTransitionError(ValueError):
    """A sync run was asked to move to a state its current state cannot reach."""
