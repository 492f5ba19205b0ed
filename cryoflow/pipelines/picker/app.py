"""The picking page's web application (Starlette): routes over the store, nothing more.

Every request carries the server's access token (``?token=...`` or the ``X-Cryoflow-Token``
header); any other request is refused with 403 before a route runs, static files included.
The routes read slices (:mod:`.views`), change the marks and picks tables in the store
(:mod:`.marks`), write particle files (:mod:`.export`) and start background actions
(:mod:`.jobs`); the page (``static/``) only draws what they return and sends clicks.

=========================  ======================================================================
route                      what
=========================  ======================================================================
``GET /``                  the page
``GET /api/tomograms``     the tomograms: shape, levels, counts of marks and picks
``GET /api/slice``         a view as PNG (``tomogram, axis, index, fit_w, fit_h[, level, low,
                           high]``); headers ``X-Cryoflow-Level``, ``X-Cryoflow-Index``
``GET /api/overlay``       the circles to draw on a view (``..., level, radius, threshold``)
``POST /api/click``        add/remove a mark or accept/reject a pick at an image position
``POST /api/picks``        accept or reject every pending pick above/below a score (or ``ids``)
``POST /api/marks``        add a mark at ``x, y, z`` or remove mark ``id`` (the page's undo)
``POST /api/save``         write a particle file (``what, path, overwrite``)
``POST /api/find``         start "find the rest"; ``GET /api/jobs/<id>`` polls it
=========================  ======================================================================
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cryoflow.errors import ConfigError, CryoflowError, NodeNotFoundError
from cryoflow.io.layout import list_tomograms
from cryoflow.pipelines.picker import export, jobs, marks, views
from cryoflow.pipelines.picker.cache import SlabCache

__all__ = ["TOKEN_HEADER", "create_app"]

TOKEN_HEADER = "X-Cryoflow-Token"
STATIC = Path(__file__).with_name("static")


class TokenGate(BaseHTTPMiddleware):
    """403 for every request without the access token."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse("403: this page needs its access token", status_code=403)
        return await call_next(request)


class Picker:
    """What the routes share: the store, its marks, cached volume views, the jobs."""

    def __init__(
        self, store: str, key: str, cluster: Any, find: Any = None, cache_bytes: int = 1 << 30
    ) -> None:
        self.store, self.key, self.find = store, key, find
        self.cache = SlabCache(cache_bytes)
        self.marks = marks.MarkStore(store)
        self.jobs = jobs.Jobs(cluster)
        self._views: OrderedDict[str, views.VolumeView] = OrderedDict()
        self._lock = threading.Lock()

    def view(self, name: str) -> views.VolumeView:
        with self._lock:
            view = self._views.get(name)
        if view is None:
            view = views.VolumeView(self.store, name, self.key, self.cache)
        with self._lock:
            view = self._views.setdefault(name, view)
            self._views.move_to_end(name)
            while len(self._views) > 8:
                self._views.popitem(last=False)
        return view

    def names(self) -> list[str]:
        return list_tomograms(self.store)


def _arg(params: Any, name: str, kind: type, default: Any = None) -> Any:
    raw = params.get(name, default)
    if raw is None:
        raise ConfigError(f"missing parameter {name!r}")
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter {name!r} must be {kind.__name__}; got {raw!r}") from exc


def _error(exc: CryoflowError) -> JSONResponse:
    code = 404 if isinstance(exc, NodeNotFoundError | FileNotFoundError) else 400
    return JSONResponse({"error": str(exc)}, status_code=code)


def create_app(
    store: str,
    token: str,
    *,
    key: str = "tomogram",
    cluster: Any = None,
    find: Any = None,
    cache_bytes: int = 1 << 30,
) -> Starlette:
    """The picking application for dataset ``store`` (volume ``key``), guarded by ``token``.

    ``cluster`` is the :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig` of "find
    the rest"; ``find`` replaces the picking function (default: imported when first used);
    ``cache_bytes`` bounds the decoded slabs kept for browsing (:mod:`.cache`).
    """
    pk = Picker(store, key, cluster, find, cache_bytes)

    def guarded(fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            try:
                body = await request.json() if request.method == "POST" else {}
            except ValueError as exc:  # not JSON
                return _error(ConfigError(f"a request body is a JSON object; got none ({exc})"))
            if not isinstance(body, dict):
                return _error(ConfigError(f"a request body is a JSON object; got {body!r}"))
            try:
                return await run_in_threadpool(fn, request, body)  # type: ignore[no-any-return]
            except CryoflowError as exc:
                return _error(exc)

        return endpoint

    def _has_volume(name: str) -> bool:
        try:
            pk.view(name)
        except NodeNotFoundError:
            return False
        return True

    def page(request: Request, body: Any) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{token}}", token)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def tomograms(request: Request, body: Any) -> Response:
        out = []
        for name in pk.names():
            try:
                v = pk.view(name)
            except NodeNotFoundError:
                continue  # no volume `key` (yet)
            m, p = pk.marks.read(name, "marks"), pk.marks.read(name, "picks")
            out.append(
                {
                    "name": name,
                    "shape": v.shape,
                    "pixel_size_angstrom": v.pixel_size_angstrom,
                    "levels": [{"level": lv.level, "shape": lv.shape} for lv in v.levels],
                    "positives": int((m["kind"] == "positive").sum()),
                    "negatives": int((m["kind"] == "negative").sum()),
                    **{s: int((p["status"] == s).sum()) for s in marks.STATUSES},
                    "score_range": (
                        [float(p["score"].min()), float(p["score"].max())] if len(p) else None
                    ),
                }
            )
        return JSONResponse({"store": str(store), "key": key, "tomograms": out})

    def _view_level(q: Any) -> tuple[views.VolumeView, views.Level]:
        v = pk.view(_arg(q, "tomogram", str))
        if q.get("level") not in (None, ""):
            return v, v.level(_arg(q, "level", int))
        return v, v.level_for(_arg(q, "axis", str), _arg(q, "fit_w", int), _arg(q, "fit_h", int))

    def slice_png(request: Request, body: Any) -> Response:
        q = request.query_params
        v, lv = _view_level(q)
        axis, index = _arg(q, "axis", str), _arg(q, "index", int)
        plane = v.plane(axis, index, lv)
        png = v.png(plane, v.window(lv, _arg(q, "low", float, 0.5), _arg(q, "high", float, 99.5)))
        headers = {"X-Cryoflow-Level": str(lv.level), "Cache-Control": "no-store"}
        return Response(png, media_type="image/png", headers=headers)

    def overlay(request: Request, body: Any) -> Response:
        q = request.query_params
        v, lv = _view_level(q)
        name, axis, index = _arg(q, "tomogram", str), _arg(q, "axis", str), _arg(q, "index", int)
        radius, threshold = _arg(q, "radius", float, 8.0), _arg(q, "threshold", float, -np.inf)
        normal, row, col = views.parse_axis(axis)
        items = []
        for table in ("marks", "picks"):
            rows = pk.marks.read(name, table)
            if table == "picks":
                rows = rows[(rows["status"] != "pending") | (rows["score"] >= threshold)]
            u, vv, d = views.xyz_to_view(axis, index, rows[["x", "y", "z"]].to_numpy(), lv)
            r = np.sqrt(np.clip(radius**2 - d**2, 0, None)) / lv.factors[col]
            for i in np.flatnonzero(d < radius):
                rec = rows.iloc[i]
                items.append(
                    {
                        "table": table,
                        "id": int(rec["id"]),
                        "kind": rec["kind"] if table == "marks" else rec["status"],
                        "score": float(rec["score"]) if table == "picks" else None,
                        "u": float(u[i]),
                        "v": float(vv[i]),
                        "r": float(max(r[i], 1.0)),
                    }
                )
        return JSONResponse({"level": lv.level, "items": items})

    def click(request: Request, body: Any) -> Response:
        v, lv = _view_level(body)
        name, axis, index = (
            _arg(body, "tomogram", str),
            _arg(body, "axis", str),
            _arg(body, "index", int),
        )
        mode, radius = _arg(body, "mode", str, "positive"), _arg(body, "radius", float, 8.0)
        xyz = views.click_to_xyz(
            axis, index, _arg(body, "u", float), _arg(body, "v", float), lv, v.shape
        )
        normal = views.parse_axis(axis)[0]
        hit = pk.marks.hit(name, xyz, 2 - normal, radius)
        if hit is None:
            new = pk.marks.add(name, xyz, mode)
            return JSONResponse({"action": "added", "id": new, "kind": mode, "xyz": xyz})
        if hit.table == "marks":
            gone = pk.marks.remove(name, hit.id)
            return JSONResponse({"action": "removed", "id": hit.id, **gone})
        status = "accepted" if mode == "positive" else "rejected"
        before = pk.marks.set_status(name, [hit.id], status)
        return JSONResponse({"action": status, "id": hit.id, "previous": before})

    def picks(request: Request, body: Any) -> Response:
        name, status = _arg(body, "tomogram", str), _arg(body, "status", str)
        if "ids" in body:  # these picks (the page's undo)
            ids = [int(i) for i in body["ids"]]
        else:  # every pending pick at or above the threshold (accept), or below it (reject)
            threshold = _arg(body, "threshold", float)
            rows = pk.marks.read(name, "picks")
            pending = rows["status"] == "pending"
            side = rows["score"] >= threshold if status == "accepted" else rows["score"] < threshold
            ids = rows.loc[pending & side, "id"].tolist()
        before = pk.marks.set_status(name, ids, status)
        return JSONResponse({"changed": len(before), "previous": before})

    def mark(request: Request, body: Any) -> Response:
        name, op = _arg(body, "tomogram", str), _arg(body, "op", str)
        if op == "add":  # a mark at level-0 voxel x, y, z (the page's undo of a removal)
            xyz = (_arg(body, "x", float), _arg(body, "y", float), _arg(body, "z", float))
            shape = pk.view(name).shape
            if not all(0 <= c <= n - 1 for c, n in zip(xyz, shape[::-1], strict=True)):
                raise ConfigError(
                    f"tomogram {name!r}: x, y, z {xyz} outside its volume {shape[::-1]}"
                )
            return JSONResponse({"id": pk.marks.add(name, xyz, _arg(body, "kind", str))})
        if op == "remove":
            return JSONResponse(pk.marks.remove(name, _arg(body, "id", int)))
        raise ConfigError(f"mark op must be add or remove; got {op!r}")

    def save(request: Request, body: Any) -> Response:
        files, n = export.save_particles(
            pk.marks,
            pk.names(),
            _arg(body, "what", str, "examples"),
            path=body.get("path") or None,
            overwrite=bool(body.get("overwrite", False)),
            key=key,
        )
        return JSONResponse({"files": [str(f) for f in files], "rows": n})

    def find_rest(request: Request, body: Any) -> Response:
        names = body.get("names") or [n for n in pk.names() if _has_volume(n)]
        unknown = sorted(set(names) - {n for n in pk.names() if _has_volume(n)})
        if unknown:
            raise NodeNotFoundError(f"{store}: no tomograms {unknown} with a volume {key!r}")
        radius = _arg(body, "radius", float, 8.0)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"params must be an object of picking options; got {params!r}")
        job = pk.jobs.start(
            "find",
            lambda j: jobs.find_rest(
                j, pk.jobs, pk.marks, names, radius=radius, params=params, find=pk.find
            ),
        )
        return JSONResponse(job.as_dict())

    def job_status(request: Request, body: Any) -> Response:
        return JSONResponse(pk.jobs.get(int(request.path_params["job"])).as_dict())

    routes = [
        Route("/", guarded(page)),
        Route("/api/tomograms", guarded(tomograms)),
        Route("/api/slice", guarded(slice_png)),
        Route("/api/overlay", guarded(overlay)),
        Route("/api/click", guarded(click), methods=["POST"]),
        Route("/api/picks", guarded(picks), methods=["POST"]),
        Route("/api/marks", guarded(mark), methods=["POST"]),
        Route("/api/save", guarded(save), methods=["POST"]),
        Route("/api/find", guarded(find_rest), methods=["POST"]),
        Route("/api/jobs/{job:int}", guarded(job_status)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pk.jobs.close()
            pk.cache.close()

    app = Starlette(
        routes=routes, middleware=[Middleware(TokenGate, token=token)], lifespan=lifespan
    )
    app.state.picker = pk
    return app
