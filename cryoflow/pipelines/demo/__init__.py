"""``cryoflow demo``: its run (:mod:`.run`), stages (:mod:`.stages`), figures (:mod:`.figures`), the paper's CNN comparison (:mod:`.compare`) and the HTML report (:mod:`.report`)."""
