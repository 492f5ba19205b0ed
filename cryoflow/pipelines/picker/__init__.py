"""The interactive picking page (``cryoflow picker STORE``), served beside the store.

:mod:`.server` binds and serves; :mod:`.app` holds the routes; :mod:`.views` renders slices
from the OME-Zarr pyramid; :mod:`.marks` keeps marks and picks in the store; :mod:`.export`
writes particle files; :mod:`.jobs` runs "find the rest" on the cluster in the background.
The page itself is ``static/`` (plain HTML and JavaScript, no build step).
"""
