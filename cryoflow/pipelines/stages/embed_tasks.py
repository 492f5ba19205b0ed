"""The tasks of ``cryoflow embed`` now live with its graph builders in
:mod:`cryoflow.graph.embed`; re-exported here so existing imports keep working."""

from __future__ import annotations

from cryoflow.graph.embed import class_sums, embed, prepare, train, tree_sum

__all__ = ["class_sums", "embed", "prepare", "train", "tree_sum"]
