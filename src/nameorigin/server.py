"""The HTTP API and its web page (FastAPI). ``create_app`` builds the app around one :class:`Predictor`.

Concurrent requests are gathered into one model call by a :class:`Batcher`; the model runs in one dedicated
thread, so the event loop keeps accepting while it works. A full queue answers 503 with ``Retry-After``; a
body over the limit answers 413 before it is parsed (:class:`BodyLimit`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import __version__
from .checkpoint import jsonable
from .fullname import DEFAULT_NAME_TYPE, NAME_TYPES, NoFirstModel
from .predict import Prediction, Predictor, prior_names
from .predict import model_info as describe_model
from .service import ServeConfig  # here since the start; defined apart so the CLI need not import FastAPI
from .text import MAX_NAME_CHARS
from .trust import TrustError

MAX_NAMES = 1000
MAX_TOP = 100
ENV_CONFIG = "NAMEORIGIN_SERVE"  # JSON of ServeConfig, for app_from_env (uvicorn's worker processes)

log = logging.getLogger(__name__)


Coverage = Field(
    None,
    gt=0,
    lt=1,
    allow_inf_nan=False,
    description="with a value, each name gets the conformal set of languages that holds the true one "
    "with this probability, e.g. 0.9",
)
PRIOR_HELP = (
    "the language mix of the names: uniform, auto (estimated on them by EM), training (the training data's), or "
    "(POST) an object of language: weight; default: the model's default mix (GET /api/model)"
)


#: How a per-name fault is answered, in the schema's words.
PER_NAME = (
    f"a name that cannot be read (no letters, empty, over {MAX_NAME_CHARS} characters, invalid Unicode) "
    "is not refused: its result carries `error` and no predictions, and the names beside it are answered"
)


NameType = Literal["auto", "surname", "first", "full"]
NAME_TYPE_HELP = (
    "how each name is read: surname (whole, as a surname), first (a given name), full (given and family "
    "names), auto (decided from the parse); any but surname adds the parts to each result"
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN, Infinity and 1e400 (read as inf) are 422, not 500

    names: list[str] = Field(..., min_length=1, max_length=MAX_NAMES, description=f"1 to {MAX_NAMES} names; {PER_NAME}")
    top: int = Field(3, ge=1, le=MAX_TOP)
    coverage: float | None = Coverage
    prior: Literal["uniform", "auto", "training"] | dict[str, float] | None = Field(None, description=PRIOR_HELP)
    name_type: NameType = Field(DEFAULT_NAME_TYPE, description=NAME_TYPE_HELP)


def name_types(predictor: Predictor):
    """The ``name_type`` values this server answers, as a type: ``first`` only with a first-name model, so that
    asking for it without one is a malformed request (422) the schema announces."""
    kinds = NAME_TYPES if predictor.first is not None else tuple(k for k in NAME_TYPES if k != "first")
    return Literal[kinds]  # type: ignore[valid-type]


def request_model(labels: list[str], kinds=NameType) -> type[PredictRequest]:
    """:class:`PredictRequest` for a model of these languages: its schema says which languages a prior may name
    and that their weights are above 0 (a language left out weighs 0), so a prior the model cannot apply is a
    malformed request (422), as the schema says, not a 400 the schema did not announce; ``kinds``: the name
    types it answers (:func:`name_types`)."""
    language = Literal[tuple(labels)]  # type: ignore[valid-type]
    weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
    prior = Literal["uniform", "auto", "training"] | Annotated[dict[language, weight], Field(min_length=1)] | None
    return create_model(
        "PredictRequest",
        __base__=PredictRequest,
        prior=(prior, Field(None, description=PRIOR_HELP + "; weights above 0, languages left out weigh 0")),
        name_type=(kinds, Field(DEFAULT_NAME_TYPE, description=NAME_TYPE_HELP)),
    )


class LanguageProbability(BaseModel):
    language: str
    probability: float


class PartResult(BaseModel):
    part: Literal["given", "family"]
    text: str = Field(..., description="the tokens read as this part")
    read: str | None = Field(None, description="the part as the model read it (Han, kana, Hangul: its reading)")
    used: bool = Field(..., description="whether the combined answer rests on this part")
    predictions: list[LanguageProbability] = Field(..., description="this part's own top languages")
    dropped: str | None = Field(None, description="why the part dropped out of the answer")


class NameResult(BaseModel):
    name: str
    predictions: list[LanguageProbability]
    out_of_scope: float | None = Field(
        None, description="0..1, higher = less like any of the model's languages; null when the model has no detector"
    )
    abstained: bool = Field(False, description="the answer is unsure; its languages are still given")
    reason: Literal["low-confidence", "out-of-scope"] | None = None
    set: list[str] | None = Field(None, description="with coverage: the prediction set, most probable first")
    error: str | None = Field(
        None, description="why this name cannot be read (then predictions is empty); absent when it was read"
    )
    name_type: str | None = Field(None, description="with name_type other than surname: the kind of name read")
    reading: str | None = Field(
        None, description="the reader used: none (Latin letters), japanese, chinese, korean, transliteration"
    )
    parts: list[PartResult] | None = Field(None, description="with name_type other than surname: each part")
    note: str | None = Field(None, description="e.g. initials that carry no evidence")


class PredictResponse(BaseModel):
    results: list[NameResult]
    prior: dict[str, float] | None = Field(None, description="the language mix used (prior=auto: the one estimated)")
    prior_names: int | None = Field(
        None,
        description="prior=auto: how many distinct names the estimate rests on "
        "(few names keep it near the model's own mix); else null",
    )


class AttentionResponse(BaseModel):
    name: str
    folded: str
    language: str | None = Field(description="null when the name cannot be read (see error)")
    probability: float | None
    characters: list[str]
    weights: list[float]
    error: str | None = Field(
        None,
        description="why the name cannot be read (then folded is empty and there are "
        "no characters); absent when it was read",
    )


# ------------------------------------------------------------------------------------------- batching


class Overloaded(Exception):
    """The batcher's queue holds too many names; the caller should come back later."""


@dataclass
class _Job:
    names: list[str]
    top: int
    future: asyncio.Future
    options: dict  # keyword arguments of predict beyond names and top (coverage, prior)
    key: Any = None  # jobs with equal keys share one predict call; None: this job alone (prior=auto)


class Batcher:
    """Gathers concurrent requests into one call of ``predict(names, top, **options)``; ``predict`` returns
    ``(predictions, extra)``, and each caller gets its own predictions and the ``extra`` of its call.

    A batch closes at ``max_names`` names or ``wait_ms`` after its first request, whichever comes first;
    while the model works on one batch the next one fills, so under load batches close at once. A request that
    comes alone (the last batch held one request and none other waits) does not wait at all. The model
    runs in one dedicated thread. Each caller gets its own predictions, in its order, cut to its ``top``.
    More than ``queue_limit`` names waiting: :class:`Overloaded`. Requests whose options differ (another
    coverage or prior) go to separate calls within the batch; a request whose option is computed from its
    own names (``prior="auto"``) always has a call of its own.
    """

    def __init__(
        self,
        predict: Callable[..., tuple[list[Prediction], Any]],
        *,
        max_names: int,
        wait_ms: float,
        queue_limit: int,
        thread_setup: Callable[[], None] | None = None,
    ):
        self.predict = predict
        self.max_names = max_names
        self.wait = wait_ms / 1000
        self.queue_limit = queue_limit
        self.thread_setup = thread_setup
        self.executor: ThreadPoolExecutor | None = None
        self.waiting = 0  # names queued, not yet taken into a batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._last_jobs = 0  # requests in the last batch

    def _start(self) -> asyncio.Queue:
        """The model thread, the queue and its collector on the running loop: started on first use, and again
        after :meth:`close` or when the loop changed (a test client that starts and stops the app per request)."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="nameorigin-model", initializer=self.thread_setup
            )
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue, self.waiting = loop, asyncio.Queue(), 0
            self._task = loop.create_task(self._collect())
        return self._queue

    async def submit(self, names: list[str], top: int, **options) -> tuple[list[Prediction], Any]:
        queue = self._start()
        if self.waiting + len(names) > self.queue_limit:
            raise Overloaded(f"{self.waiting} names are waiting for the model (limit {self.queue_limit})")
        self.waiting += len(names)
        key = None if options.get("prior") == "auto" else json.dumps(options, sort_keys=True)
        job = _Job(names, top, asyncio.get_running_loop().create_future(), options, key)
        queue.put_nowait(job)
        return await job.future

    async def run(self, fn: Callable, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` in the model thread (also for calls that are not batched, such as
        attention)."""
        self._start()
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def _take(self) -> list[_Job]:
        """Wait for a first job, then gather more until ``max_names`` or the wait runs out."""
        loop = asyncio.get_running_loop()
        jobs = [await self._queue.get()]
        n = len(jobs[0].names)
        deadline = loop.time() + self.wait
        # A caller alone (the last batch held one request and nobody else is waiting) is not kept waiting
        # for company that is not coming; under load the last batch held many, and the wait gathers them.
        alone = self._last_jobs <= 1 and self._queue.empty()
        while n < self.max_names and not alone:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
                    break
            jobs.append(job)
            n += len(job.names)
        self.waiting -= n
        self._last_jobs = len(jobs)
        return jobs

    async def _collect(self) -> None:
        while True:
            jobs = await self._take()
            groups: dict[Any, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key if job.key is not None else id(job), []).append(job)
            for group in groups.values():
                await self._call(group)

    async def _call(self, jobs: list[_Job]) -> None:
        """One model call for jobs of the same options; each job's future gets its slice. When a joined call
        fails, each job is tried again alone, so that only the request at fault hears of it."""
        names = [name for job in jobs for name in job.names]
        try:
            results, extra = await self.run(self.predict, names, max(job.top for job in jobs), **jobs[0].options)
        except Exception as e:  # the model failed, or an option was refused
            if len(jobs) > 1:
                log.warning("a batch of %d requests failed (%s: %s); trying each alone", len(jobs), type(e).__name__, e)
                for job in jobs:
                    await self._call([job])
                return
            if not isinstance(e, TrustError):
                log.exception("prediction failed for a request of %d names", len(names))
            if not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        start = 0
        for job in jobs:
            mine = results[start : start + len(job.names)]
            start += len(job.names)
            for r in mine:
                r.predictions = r.predictions[: job.top]
            if not job.future.done():  # a caller that went away has a cancelled future
                job.future.set_result((mine, extra))

    def close(self) -> None:
        """Stop the collector and the model thread (the app's shutdown); a later request starts them again."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


# ------------------------------------------------------------------------------------------- body limit


class BodyLimit:
    """Pure ASGI middleware: a request body over ``max_body`` bytes gets 413 before the app reads it.

    A declared ``Content-Length`` over the limit is refused at once; a streamed (chunked) body is counted as
    it arrives and refused when the count passes the limit. (FastAPI 0.16x has ``max_body_size`` built in;
    this works with every FastAPI this package accepts.)
    """

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": _TooLarge(self.max_body).detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await self._refuse(send)
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)


class _TooLarge(HTTPException):
    """Raised from inside the app's body read; an ``HTTPException`` so FastAPI passes it through unwrapped."""

    def __init__(self, max_body: int):
        super().__init__(
            413, f"request body over the limit of {max_body:,} bytes", headers={"Connection": "close"}
        )  # uvicorn closes after the answer: the rest goes unread


# ------------------------------------------------------------------------------------------- the app


class ErrorResponse(BaseModel):
    detail: str


#: The error answers each endpoint declares in its OpenAPI schema (422, a malformed request, FastAPI adds).
ERRORS = {
    400: {
        "model": ErrorResponse,
        "description": "a prior or coverage the model cannot apply (a prior naming "
        "no language of the model, a coverage without calibration)",
    },
    413: {
        "model": ErrorResponse,
        "description": "more names than the server's --queue-limit in one request, "
        "or a request body over the server's --max-body",
    },
    503: {
        "model": ErrorResponse,
        "description": "too many names waiting for the model (the server's "
        "--queue-limit); the Retry-After header says when to retry",
    },
}


def create_app(
    predictor: Predictor | None = None, model_path: str | os.PathLike | None = None, config: ServeConfig | None = None
) -> FastAPI:
    """The app around ``predictor`` (default: ``model_path`` or ``config.model`` loaded at ``config.precision``)."""
    config = config or ServeConfig(model=str(model_path) if model_path else None)
    predictor = predictor or Predictor.load(
        config.model, first=config.first_model, precision=config.precision, sha256=config.model_sha256
    )
    ck = predictor.checkpoint
    batcher = Batcher(
        predictor.predict_with_prior,
        max_names=config.batch_names,
        wait_ms=config.batch_wait_ms,
        queue_limit=config.queue_limit,
        thread_setup=_torch_threads(config.threads),
    )
    docs = {} if config.api_docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(
        title="nameorigin",
        version=__version__,
        description="Which language does a name come from? Character-level recurrent networks.",
        lifespan=_lifespan(batcher, freeze=config.gc_freeze, warm=lambda: predictor.predict(WARM_UP)),
        default_response_class=SafeJSONResponse,
        **docs,
    )
    app.add_middleware(BodyLimit, max_body=config.max_body)
    page = (resources.files("nameorigin") / "static" / "index.html").read_text(encoding="utf-8")
    app.add_middleware(SecurityHeaders, page_policy=page_policy(page))
    if config.allowed_hosts is not None:  # outermost: a foreign Host is refused before anything else runs
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=config.allowed_hosts, www_redirect=False)
    app.state.batcher = batcher
    retry_after = str(max(1, math.ceil(config.batch_wait_ms / 1000)))

    @app.exception_handler(Overloaded)
    async def overloaded(request, exc: Overloaded):
        return JSONResponse(
            {"detail": f"the server is busy: {exc}; try again shortly"},
            status_code=503,
            headers={"Retry-After": retry_after},
        )

    @app.exception_handler(RequestValidationError)
    async def malformed(request, exc: RequestValidationError):
        """FastAPI's 422, with values JSON cannot hold (NaN, infinities, lone surrogates) made safe to echo; a
        POST whose body is not JSON (curl's default form type) also says what to send."""
        body = {"detail": jsonable(jsonable_encoder(exc.errors()))}
        kind = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in kind:
            body["hint"] = (
                f"the body was sent as {kind.split(';')[0] or 'no content type'}: send JSON with "
                "content-type: application/json (curl -H 'content-type: application/json' -d '{\"names\": [...]}')"
            )
        return SafeJSONResponse(body, status_code=422)

    async def predict(
        names: list[str], top: int, *, coverage: float | None = None, prior=None, name_type: str = DEFAULT_NAME_TYPE
    ) -> PredictResponse:
        if len(names) > config.queue_limit:  # would be refused however long the caller waited: not a 503
            raise HTTPException(
                413,
                f"too many names: {len(names)} in one request; this server queues at most "
                f"{config.queue_limit} (--queue-limit)",
            )
        try:
            results, used = await batcher.submit(names, top, coverage=coverage, prior=prior, name_type=name_type)
        except (TrustError, NoFirstModel) as e:
            raise HTTPException(400, str(e)) from None  # it names the parameter, the request's field of that name
        except Overloaded:
            raise
        except Exception as e:  # the model failed on this request's names (the batcher logged it): a clean 500
            raise HTTPException(
                500, f"prediction failed for this request ({type(e).__name__}); the server logged it"
            ) from None
        return PredictResponse(
            results=[NameResult(**r.to_dict()) for r in results],
            prior=used,
            prior_names=prior_names(results) if prior == "auto" and used else None,
        )

    async def predict_one(
        name: str = Query(..., min_length=1, max_length=MAX_NAME_CHARS, description=f"a name; {PER_NAME}"),
        top: int = Query(3, ge=1, le=MAX_TOP),
        coverage: float | None = Query(None, gt=0, lt=1, allow_inf_nan=False, description=Coverage.description),
        prior: Literal["uniform", "auto", "training"] | None = Query(None, description=PRIOR_HELP),
        name_type: Annotated[NameType, Query(description=NAME_TYPE_HELP)] = DEFAULT_NAME_TYPE,
    ):
        """The top languages of one name, its out-of-scope score and whether the answer abstains."""
        return await predict([name], top, coverage=coverage, prior=prior, name_type=name_type)

    kinds = name_types(predictor)
    predict_one.__annotations__["name_type"] = Annotated[kinds, Query(description=NAME_TYPE_HELP)]
    app.get("/api/predict", response_model=PredictResponse, responses=ERRORS)(predict_one)

    async def predict_many(request):
        """The top languages of each of up to 1,000 names (and the language mix used)."""
        return await predict(
            request.names, request.top, coverage=request.coverage, prior=request.prior, name_type=request.name_type
        )

    predict_many.__annotations__["request"] = request_model(list(predictor.labels), kinds)  # a class made here
    app.post("/api/predict", response_model=PredictResponse, responses=ERRORS)(predict_many)

    @app.get("/api/attention", response_model=AttentionResponse, responses=ERRORS)
    async def attention(
        name: str = Query(..., min_length=1, max_length=MAX_NAME_CHARS, description=f"a name; {PER_NAME}"),
    ):
        """Each character of the folded name with its attention weight (gru-attention models)."""
        if not predictor.has_attention:
            raise HTTPException(400, f"this model ({ck.config.name}) has no attention")
        r = (await batcher.run(lambda: predictor.predict([name], top=1, attention=True, name_type="surname")))[0]
        if r.error:
            return AttentionResponse(
                name=name, folded="", language=None, probability=None, characters=[], weights=[], error=r.error
            )
        return AttentionResponse(
            name=name,
            folded=r.folded,
            language=r.predictions[0]["language"],
            probability=r.predictions[0]["probability"],
            characters=list(r.folded),
            weights=r.attention,
        )

    about = describe_model(predictor)  # what the model is, its figures, its trust layer, its file's digest

    @app.get("/api/model")
    async def model_info():
        """The model's name, sizes, labels, training data fingerprint, its validation and held-out test
        metrics (see ``metrics_description``), its trust layer, its file's SHA-256 digest (as ``nameorigin
        info --json`` prints them), and how this server runs it."""
        return {
            **about,
            "serving": {
                "precision": predictor.precision,
                "batch_names": config.batch_names,
                "batch_wait_ms": config.batch_wait_ms,
                "queue_limit": config.queue_limit,
                "max_body": config.max_body,
            },
        }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """As FastAPI answers, except that a 405's ``Allow`` lists every method of the path (GET and POST of
        /api/predict are two routes, and Starlette would name only the first)."""
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            error = {
                "type": "json_invalid",
                "loc": ["body", cause.start],
                "msg": f"the body is not valid UTF-8 (byte {cause.start}: "
                f"{cause.object[cause.start : cause.start + 1]!r}); send JSON encoded as UTF-8",
                "input": None,
            }
            return await malformed(request, RequestValidationError([error]))  # the 422 of any malformed body
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = sorted(
                {
                    m
                    for r in app.routes
                    if getattr(r, "path", None) == request.url.path
                    for m in (getattr(r, "methods", None) or ())
                }
            )
            headers["Allow"] = ", ".join(methods)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    for route in list(app.routes):  # HEAD wherever GET is answered, as Starlette's own routes do (not in the schema)
        if isinstance(route, APIRoute) and "GET" in route.methods:
            app.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_model=route.response_model,
                response_class=route.response_class,
            )
    return app


class SafeJSONResponse(JSONResponse):
    """FastAPI's JSON answer, but one that can always be sent: a value JSON cannot hold (NaN, an infinity) is
    written as null, and a string UTF-8 cannot encode (a lone surrogate a client sent as ``"\\ud800"``) is
    escaped as JSON allows, instead of failing with 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # NaN or infinite, or UnicodeEncodeError (a ValueError too)
            return json.dumps(jsonable(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
                "ascii"
            )


def page_policy(page: str) -> str:
    """The web page's Content-Security-Policy: its own origin only, its inline script and style by hash."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for body in re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        )

    return (
        f"default-src 'none'; connect-src 'self'; img-src 'self' data:; script-src 'self' {hashes('script')}; "
        f"style-src 'self' {hashes('style')}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """Pure ASGI middleware: every answer says ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``
    and ``Referrer-Policy: no-referrer``, and carries a Content-Security-Policy (the web page's own, which allows
    only its inline script and style; for everything else ``default-src 'none'``). The /docs pages, when turned
    on, load their assets from a CDN and get no policy that would block it."""

    API_POLICY = "default-src 'none'; frame-ancestors 'none'"
    DOCS = ("/docs", "/redoc")

    def __init__(self, app, page_policy: str):
        self.app = app
        self.page_policy = page_policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        policy = self.page_policy if path == "/" else None if path.startswith(self.DOCS) else self.API_POLICY

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if policy:
                    headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class RequestDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on reading each request: its headers and body must arrive
    within ``request_timeout`` seconds of its first byte, or the connection is closed. uvicorn itself has no
    header or body timeout (only the idle keep-alive one), and middleware runs only once the headers are in, so
    a client sending a request a byte at a time would hold its connection forever. Give it to uvicorn as
    ``http=functools.partial(RequestDeadline, request_timeout=30)``."""

    def __init__(self, *args, request_timeout: float = ServeConfig.request_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request did not arrive within %g s", self.request_timeout)
            self.transport.close()

    def on_message_begin(self) -> None:  # the request's first byte
        super().on_message_begin()
        self._clear_deadline()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def on_message_complete(self) -> None:  # its last byte
        self._clear_deadline()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)


def uvicorn_settings(config: ServeConfig) -> dict:
    """The keyword arguments of ``uvicorn.run`` that bound what one client can hold: connections at once, idle
    keep-alive time, and the time a request may take to arrive."""
    return {
        "limit_concurrency": config.limit_concurrency,
        "timeout_keep_alive": config.timeout_keep_alive,
        "http": functools.partial(RequestDeadline, request_timeout=config.request_timeout),
    }


def _torch_threads(threads: int) -> Callable[[], None] | None:
    if not threads:
        return None

    def setup() -> None:
        import torch

        torch.set_num_threads(threads)

    return setup


#: Names answered once at start-up, so that the parser's lexicon, the family-name tables and the readers are
#: loaded (and frozen below) before the first request, not during it (a second's stall under load otherwise).
WARM_UP = ["Giuseppe Verdi", "김민준", "佐藤", "Kim Jong-un", "Ludwig van Beethoven"]


def _lifespan(batcher: Batcher, *, freeze: bool, warm=None):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if warm is not None:
            warm()
        # Everything built so far (torch, the model, the trust layer, FastAPI: a few hundred thousand objects)
        # lives as long as the server: moved out of the collector's reach, a full collection no longer scans
        # it, which otherwise stalls every request in flight for ~100 ms every half second under load
        # (bench/serve_load.py --servers thawed,on shows it).
        if freeze:
            gc.collect()
            gc.freeze()
        yield
        batcher.close()

    return lifespan


def config_to_env(config: ServeConfig) -> dict[str, str]:
    """The environment that makes :func:`app_from_env` build the app ``config`` describes."""
    return {ENV_CONFIG: json.dumps(asdict(config))}


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory nameorigin.server:app_from_env`` (and ``serve --workers N``): the
    settings come from the JSON in ``$NAMEORIGIN_SERVE``, absent keys taking :class:`ServeConfig`'s defaults."""
    raw = json.loads(os.environ.get(ENV_CONFIG) or "{}")
    known = {f.name for f in fields(ServeConfig)}
    return create_app(config=ServeConfig(**{k: v for k, v in raw.items() if k in known}))
