"""``cryoflow verify``: leftovers of interrupted writes, and stale results, in a store.

A command, not a stage of ``cryoflow run``; the checks themselves are the store's
(:mod:`cryoflow.io.verify`).
"""

from __future__ import annotations

from cryoflow.io.verify import Leftover, verify_store

__all__ = ["Leftover", "verify_store"]
