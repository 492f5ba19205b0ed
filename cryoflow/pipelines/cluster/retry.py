"""One retry policy for every command: a task that fails is run again ``RETRIES`` more times.

Transient errors (a network file system that hiccups, an object store that throttles, a
worker that dies mid task) should not fail a command. ``cryoflow run`` has always retried
each chunk task ``cluster.retries`` times (default 1); every other command computed with
Dask's default of no retry. Every client :func:`cryoflow.pipelines.cluster.connect.connect`
yields is a :func:`retrying_client` whose ``compute``, ``persist``, ``submit`` and ``map``
give a task ``retries`` attempts more unless the caller says otherwise (``retries=0``
included), so the policy lives here once. A task whose error is cryoflow's own
(:class:`~cryoflow.errors.CryoflowError`: bad input, a damaged chunk) fails the same way
again and costs one extra attempt; it is not worth telling the two apart per task.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["RETRIES", "retrying_client"]

#: extra attempts of a failing task (``cryoflow run``'s ``cluster.retries`` has the same default)
RETRIES = 1


@functools.cache
def retrying_client() -> type:
    """``distributed.Client`` with :data:`RETRIES` (or the instance's ``cryoflow_retries``)
    as the default ``retries`` of ``compute``, ``persist``, ``submit`` and ``map``."""
    from distributed import Client

    def with_retries(name: str) -> Any:
        method = getattr(Client, name)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("retries") is None:
                kwargs["retries"] = self.cryoflow_retries
            return method(self, *args, **kwargs)

        return call

    return type(
        "RetryingClient",
        (Client,),
        {
            "cryoflow_retries": RETRIES,
            "__doc__": "A Client whose tasks are retried by default (cryoflow's one policy).",
            **{name: with_retries(name) for name in ("compute", "persist", "submit", "map")},
        },
    )
