"""``cryoflow run``: pipeline files (:mod:`.config`), the run (:mod:`.run`), its per-tomogram
stream (:mod:`.stream`), dataset-level steps in rounds (:mod:`.rounds`), provenance and run
tokens (:mod:`.provenance`), summaries (:mod:`.summary`) and ``cryoflow check``
(:mod:`.check`)."""
