"""Cluster plumbing: creating or reaching a Dask cluster (:mod:`.connect`), mutual TLS
(:mod:`.security`), worker plugins (:mod:`.trim`), progress bars (:mod:`.progress`)."""
