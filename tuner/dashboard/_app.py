"""The dashboard web app: server-rendered pages and the JSON API they use, over one storage.

Every route is a GET: the dashboard cannot change or delete anything in the storage. Pages are
Jinja2 templates with autoescaping (study names, parameter values and error messages render as
text); the study page's table, figures and live updates come from the JSON API under
``/api/`` through ``static/dashboard.js``, which builds the DOM with ``textContent`` only.
Study names travel URL-encoded in paths (``/studies/{name}``), so any name works.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuner.dashboard._auth import SecurityMiddleware
from tuner.dashboard._figures import FigureCache
from tuner.dashboard._queries import MAX_PER_PAGE, SQL_INT_MAX, BadQuery, DashboardData, NotFound, ParamFilter, TrialQuery

if TYPE_CHECKING:
    import optuna

__all__ = ["create_app"]

_HERE = Path(__file__).parent


class ErrorBody(BaseModel):
    """The body of every error the API answers itself (400, 401, 404): one message for a person."""

    detail: str


# Every status the API can answer is declared in the schema, so clients (and the schema fuzz test)
# can rely on it: 401 on every route (when a token is set), 503/500 on every route (a storage that
# fails), 404 where a path names a study, trial
# or file, 400 where a query parameter is parsed beyond its type; FastAPI adds 422 itself.
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "a token is set and the request does not carry it"}}
# Every route reads the storage: 503 while its database cannot be reached, 500 for a query the
# database refused (tables that are not quite Optuna's), each with one line saying what is wrong.
_STORAGE_FAILED: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorBody, "description": "the storage's database refused the query"},
    503: {"model": ErrorBody, "description": "the storage's database cannot be reached; try again once it is back"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such study or trial"}}
_BAD_QUERY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a query parameter that cannot be understood"}}
# Trial numbers and pages are bounded in the schema: a number past SQL's 64-bit integers cannot name
# a row (SQLite refuses to bind it), so it is a 422 like any other malformed number, not a 500.
_NUMBER = PathParam(ge=0, le=SQL_INT_MAX, description="the trial's number in its study")
_MAX_PAGE = SQL_INT_MAX // MAX_PER_PAGE
_FILE = {"description": "the file's bytes", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def create_app(storage: "str | optuna.storages.RDBStorage | None" = None, *, token: str | None = None) -> FastAPI:
    """The dashboard app over ``storage`` (a URL, an open ``RDBStorage`` or the default storage).

    ``token``: when given, every request must carry it (see :mod:`tuner.dashboard._auth`).
    """
    from tuner import __version__
    from tuner.storage import ensure_indexes, open_storage

    rdb = storage if storage is not None and not isinstance(storage, str) else open_storage(storage, readonly=True)
    # The dashboard's one write, best-effort: the indexes its table queries need, on a database
    # filled by plain Optuna or an older tuner (they hold no data; a read-only file is left as is).
    ensure_indexes(rdb)
    data = DashboardData(rdb)
    figures = FigureCache(data)
    templates = _templates()

    app = FastAPI(title="tuner dashboard", version=__version__, docs_url=None, redoc_url=None,
                  description="Read-only JSON API over a tuner storage: studies, trials, figures and artifacts.",
                  responses={**_UNAUTHORIZED, **_STORAGE_FAILED})
    app.add_middleware(SecurityMiddleware, token=token)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, templates, 404, str(exc))

    @app.exception_handler(BadQuery)
    async def _bad_query(request: Request, exc: BadQuery) -> Response:
        return _error(request, templates, 400, str(exc))

    # A person who mistypes a page's address gets a page that says so, not FastAPI's JSON; the API
    # keeps FastAPI's own bodies, which its schema declares.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        message = f"no such page: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return _error(request, templates, exc.status_code, message)

    async def _storage_failed(request: Request, exc: Exception) -> Response:
        return _storage_error(request, templates, exc, rdb.url)

    for kind in _storage_errors():
        app.add_exception_handler(kind, _storage_failed)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        return _error(request, templates, 422, _validation_message(exc))

    # ---- JSON API (suffix routes before the bare study route: names may contain "/") --------

    @app.get("/api/studies", tags=["api"], summary="Every study with its state, counts, best value and progress")
    def api_studies() -> dict[str, Any]:
        return {"studies": data.studies()}

    @app.get("/api/studies/{name:path}/trials/{number}/artifacts/{artifact:path}", tags=["api"],
             summary="Download an artifact recorded for the trial (no other file is ever served)",
             response_class=FileResponse, response_model=None,
             responses={200: _FILE, 404: {"model": ErrorBody, "description": "not a recorded artifact"}})
    def api_artifact(name: str, artifact: str, number: int = _NUMBER) -> Response:
        path = data.artifact_path(name, number, artifact)
        return FileResponse(path, filename=Path(artifact).name, media_type="application/octet-stream")

    @app.get("/api/studies/{name:path}/trials/{number}/exports/{index}/{filename}", tags=["api"],
             summary="Download a file of an export of the trial recorded by tuner export (no other file is served)",
             response_class=FileResponse, response_model=None,
             responses={200: _FILE, 404: {"model": ErrorBody, "description": "not a recorded export file"}})
    def api_export_file(name: str, index: int, filename: str, number: int = _NUMBER) -> Response:
        path = data.export_path(name, number, index, filename)
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")

    @app.get("/api/studies/{name:path}/trials/{number}", tags=["api"], responses=_NOT_FOUND,
             summary="One trial: parameters, values, curves, metrics, placement, error, artifacts")
    def api_trial(name: str, number: int = _NUMBER) -> dict[str, Any]:
        return _clean({**data.trial(name, number), "exports": data.exports(name, number)})

    @app.get("/api/studies/{name:path}/trials", tags=["api"], responses={**_NOT_FOUND, **_BAD_QUERY},
             summary="A page of the trials table, sorted and filtered on the server")
    def api_trials(
        name: str,
        state: Optional[str] = Query(None, description="comma-separated states, e.g. COMPLETE,PRUNED"),
        value_min: Optional[float] = Query(None, description="keep trials whose value (of `objective`) is >= this"),
        value_max: Optional[float] = Query(None, description="keep trials whose value (of `objective`) is <= this"),
        objective: int = Query(0, ge=0, description="objective the value filter applies to"),
        param: list[str] = Query([], description="NAME:LOW:HIGH (a bound may be empty) or NAME=A|B; repeatable"),
        sort: str = Query("number", description="number, state, value, value:K, duration, started, completed or param:NAME"),
        order: str = Query("asc", pattern="^(asc|desc)$"),
        page: int = Query(1, ge=1, le=_MAX_PAGE),
        per_page: int = Query(50, ge=1, le=MAX_PER_PAGE),
    ) -> dict[str, Any]:
        query = _trial_query(state, value_min, value_max, objective, param, sort, order, page, per_page)
        return _clean(data.trials(name, query))

    @app.get("/api/studies/{name:path}/figures", tags=["api"], response_model=None,
             responses={200: {"description": "the figures", "content": {"application/json": {"schema": {"type": "object"}}}},
                        **_NOT_FOUND},
             summary="The report's figures (Plotly JSON) and search-space advice, cached per study version")
    def api_figures(name: str) -> Response:  # JSON text built by the cache (figures embedded as raw JSON)
        return Response(figures.figures_json(name), media_type="application/json")

    @app.get("/api/studies/{name:path}/compare", tags=["api"], responses={**_NOT_FOUND, **_BAD_QUERY}, summary="Two to five trials side by side")
    def api_compare(name: str, trials: str = Query(..., description="comma-separated trial numbers, e.g. 3,7")) -> dict[str, Any]:
        return _clean(data.compare(name, _numbers(trials)))

    @app.get("/api/studies/{name:path}/version", tags=["api"], responses=_NOT_FOUND,
             summary="A marker that changes whenever a trial is added, finishes or reports a step")
    def api_version(name: str) -> dict[str, Any]:
        return {"version": data.version(name)}

    @app.get("/api/studies/{name:path}/params", tags=["api"], responses=_NOT_FOUND, summary="The study's parameter names")
    def api_params(name: str) -> dict[str, Any]:
        return {"params": data.param_names(name)}

    @app.get("/api/studies/{name:path}", tags=["api"], responses=_NOT_FOUND, summary="One study: state, counts, best trial(s), spec")
    def api_study(name: str) -> dict[str, Any]:
        return _clean(data.study(name))

    # ---- pages ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    def page_studies(request: Request) -> Response:
        return _page(templates, "studies.html", request, studies=data.studies())

    # ``/studies`` reads as the list of studies (the study pages sit under it): without these routes
    # Starlette redirected it to ``/studies/``, which the study route took for a study named "" (404).
    @app.get("/studies", response_model=None, include_in_schema=False)
    @app.get("/studies/", response_model=None, include_in_schema=False)
    def studies_redirect() -> Response:
        return RedirectResponse("/", status_code=307)

    @app.get("/studies/{name:path}/trials/{number}", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    def page_trial(request: Request, name: str, number: int = _NUMBER) -> Response:
        trial = _clean({**data.trial(name, number), "exports": data.exports(name, number)})
        study = data.meta(name)
        return _page(templates, "trial.html", request, study=study, trial=trial,
                     trial_json=_script_json(trial), study_name=name)

    @app.get("/studies/{name:path}/compare", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    def page_compare(request: Request, name: str, trials: str = "") -> Response:
        result = _clean(data.compare(name, _numbers(trials)))
        return _page(templates, "compare.html", request, study_name=name, cmp=result, cmp_json=_script_json(result))

    @app.get("/studies/{name:path}", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    def page_study(request: Request, name: str) -> Response:
        study = _clean(data.study(name))
        params = data.param_names(name)
        return _page(templates, "study.html", request, study=study, params=params, study_name=name,
                     boot_json=_script_json({"name": name, "params": params, "directions": study["directions"],
                                             "metric_names": study["metric_names"], "version": study["version"]}))

    @app.get("/assets/plotly.min.js", response_model=None, include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(_plotly_path(), media_type="text/javascript",
                            headers={"cache-control": "public, max-age=86400"})

    return app


# ---- helpers -----------------------------------------------------------------------------------


def _trial_query(state: str | None, value_min: float | None, value_max: float | None, objective: int,
                 param: list[str], sort: str, order: str, page: int, per_page: int) -> TrialQuery:
    states = tuple(s.strip().upper() for s in (state or "").split(",") if s.strip())
    for bound in (value_min, value_max):
        if bound is not None and not math.isfinite(bound):
            raise BadQuery("value_min/value_max must be finite numbers")
    return TrialQuery(states=states, value_min=value_min, value_max=value_max, objective=objective,
                      params=tuple(ParamFilter.parse(p) for p in param if p.strip()), sort=sort, order=order,
                      page=page, per_page=per_page)


def _numbers(text: str) -> list[int]:
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadQuery(f"trials {text!r}: expected comma-separated trial numbers, e.g. 3,7") from None
    for n in numbers:
        if not 0 <= n <= SQL_INT_MAX:  # no trial has it, and SQL cannot even compare with it
            raise BadQuery(f"trials {text!r}: {n} is not a trial number")
    return numbers


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (not valid JSON) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _script_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: no ``<`` can end the element."""
    return json.dumps(value).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@functools.lru_cache(maxsize=1)
def _plotly_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    env.filters["param"] = _fmt_param
    env.filters["duration"] = _fmt_duration
    env.filters["epoch"] = _fmt_epoch
    env.filters["urlname"] = lambda name: __import__("urllib.parse").parse.quote(str(name), safe="")
    env.filters["tojson_text"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    return env


def _page(env: Any, template: str, request: Any, **context: Any) -> Any:
    return HTMLResponse(env.get_template(template).render(request_path=request.url.path, **context))


def _validation_message(exc: Any) -> str:
    """FastAPI's first validation error as one line: ``number: must be a whole number (got 'abc')``."""
    errors = exc.errors()
    if not errors:
        return "the address could not be understood"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "address"
    got = f" (got {first['input']!r})" if "input" in first else ""
    return f"{where}: {first.get('msg', 'invalid')}{got}"


#: Where the dashboard logs a request its storage failed: uvicorn's own log, shown at its default level.
_LOG = logging.getLogger("uvicorn.error")


def _storage_errors() -> tuple[type[Exception], ...]:
    """The errors a read of the storage raises: SQLAlchemy's, and Optuna's wrapper around them."""
    import optuna
    import sqlalchemy.exc

    return (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)


def _storage_error(request: Any, env: Any, exc: Exception, url: str) -> Any:
    """A request its storage failed: 503 while the database cannot be reached, 500 for a query it refused.

    Unhandled, each such request was a bare ``Internal Server Error`` and a full traceback in the
    log, on every route while a PostgreSQL server was down. Now the answer says what the
    database said and the fix, in one line (JSON ``detail`` under /api/, the error page
    elsewhere), and the log gets that line once per request. Nothing is kept of the failure:
    the storage's pool reconnects, so the next request after the database is back is served.
    """
    from tuner._retry_storage import _is_transient
    from tuner.storage import redact, storage_failure

    failure = storage_failure(exc, url=url)
    message = str(failure) if failure is not None else f"storage {redact(url)}: {' '.join(str(exc).split())}"
    status = 503 if _is_transient(exc) else 500
    _LOG.warning("%s %s: %s %s", request.method, request.url.path, status, message)
    return _error(request, env, status, message)


def _error(request: Any, env: Any, status: int, message: str) -> Any:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    html = env.get_template("error.html").render(request_path=request.url.path, status=status, message=message)
    return HTMLResponse(html, status_code=status)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _fmt_param(value: Any) -> str:
    """A parameter's value: None is a value a choice can hold (``grad_clip: null``, no clipping),
    shown as ``None``; the dash is for what is missing (a value, a duration)."""
    if isinstance(value, (list, tuple)):  # a per-layer list, as the objective saw it
        return "[" + ", ".join(_fmt_param(v) for v in value) + "]"
    return "None" if value is None else _fmt(value)


def _fmt_epoch(value: Any) -> str:
    """Seconds since the epoch (the placement's ``started``, from ``time.time()``) as the page shows
    the trial's own times: ISO date and time to the second, local as Optuna's ``datetime_start``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.datetime.fromtimestamp(value).isoformat(timespec="seconds")
        except (ValueError, OverflowError, OSError):  # far outside the dates a clock gives
            pass
    return _fmt(value)


def _fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
