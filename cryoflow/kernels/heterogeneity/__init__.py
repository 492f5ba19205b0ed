"""Heterogeneity, classical: multi-reference classification, wedge-compensated PCA + k-means,
multi-body refinement (pure batched kernels and their eager loops).

A subpackage because these thirteen small modules are one concept built on the averaging
kernels (:mod:`cryoflow.kernels.align`, :mod:`~cryoflow.kernels.average`,
:mod:`~cryoflow.kernels.finish`) and import each other; at the top of ``kernels/`` they would
be a third of the folder. Per-batch functions (what a distributed round maps) and finish
functions (what it runs once on the reduced sums):

- :mod:`.groups`: :class:`~.groups.GroupSums` (one ``HalfSums`` per class or body, associative)
  and :func:`~.groups.accumulate_groups`, :func:`~.groups.finish_groups`;
- :mod:`.multiref`: :func:`~.multiref.classify_batch`, :func:`~.multiref.finish_classes`;
  :mod:`.multiref_loop` the eager loop;
- :mod:`.features`, :mod:`.pca`, :mod:`.kmeans`: wedge-filled features, the randomized PCA
  over batches, k-means with K by BIC; :mod:`.pca_classify` the eager loop;
- :mod:`.subtract`, :mod:`.multibody`, :mod:`.motions`: signal subtraction, per-body local
  refinement and reconstruction, principal motions; :mod:`.multibody_loop` the eager loop;
- :mod:`.metrics`: figures against a known truth (class accuracy, body angle errors).
"""
