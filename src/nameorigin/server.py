"""The HTTP API and its web page (FastAPI). ``create_app`` builds the app around one :class:`Predictor`.

Concurrent requests are gathered into one model call by a :class:`Batcher`; the model runs in one dedicated
thread, so the event loop keeps accepting while it works. A full queue answers 503 with ``Retry-After``; a
body over the limit answers 413 before it is parsed (:class:`BodyLimit`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from importlib import resources

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .predict import Prediction, Predictor
from .text import MAX_NAME_CHARS

MAX_NAMES = 1000
MAX_TOP = 100
ENV_CONFIG = "NAMEORIGIN_SERVE"  # JSON of ServeConfig, for app_from_env (uvicorn's worker processes)

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """The service's settings; the single source of their defaults."""

    model: str | None = None  # checkpoint path; None: the bundled model
    precision: str = "fp32"
    batch_names: int = 256  # a batch closes at this many names...
    batch_wait_ms: float = 2.0  # ...or this long after its first request, whichever comes first
    queue_limit: int = 4096  # names waiting for the model; above it requests get 503
    max_body: int = 1_000_000  # bytes of request body; above it 413
    threads: int = 1  # torch threads of the model thread (0: torch's default)


class PredictRequest(BaseModel):
    names: list[str] = Field(..., description=f"at most {MAX_NAMES} names, each at most {MAX_NAME_CHARS} characters")
    top: int = Field(3, ge=1, le=MAX_TOP)


class LanguageProbability(BaseModel):
    language: str
    probability: float


class NameResult(BaseModel):
    name: str
    predictions: list[LanguageProbability]


class PredictResponse(BaseModel):
    results: list[NameResult]


class AttentionResponse(BaseModel):
    name: str
    folded: str
    language: str
    probability: float
    characters: list[str]
    weights: list[float]


# ------------------------------------------------------------------------------------------- batching

class Overloaded(Exception):
    """The batcher's queue holds too many names; the caller should come back later."""


@dataclass
class _Job:
    names: list[str]
    top: int
    future: asyncio.Future


class Batcher:
    """Gathers concurrent requests into one call of ``predict(names, top)``.

    A batch closes at ``max_names`` names or ``wait_ms`` after its first request, whichever comes first;
    while the model works on one batch the next one fills, so under load batches close at once. The model
    runs in one dedicated thread. Each caller gets its own predictions, in its order, cut to its ``top``.
    More than ``queue_limit`` names waiting: :class:`Overloaded`.
    """

    def __init__(self, predict: Callable[[list[str], int], list[Prediction]], *, max_names: int,
                 wait_ms: float, queue_limit: int, thread_setup: Callable[[], None] | None = None):
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

    def _start(self) -> asyncio.Queue:
        """The model thread, the queue and its collector on the running loop: started on first use, and again
        after :meth:`close` or when the loop changed (a test client that starts and stops the app per request)."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nameorigin-model",
                                               initializer=self.thread_setup)
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue, self.waiting = loop, asyncio.Queue(), 0
            self._task = loop.create_task(self._collect())
        return self._queue

    async def submit(self, names: list[str], top: int) -> list[Prediction]:
        queue = self._start()
        if self.waiting + len(names) > self.queue_limit:
            raise Overloaded(f"{self.waiting} names are waiting for the model (limit {self.queue_limit})")
        self.waiting += len(names)
        job = _Job(names, top, asyncio.get_running_loop().create_future())
        queue.put_nowait(job)
        return await job.future

    async def run(self, fn: Callable, *args):
        """Run ``fn(*args)`` in the model thread (for calls that are not batched, such as attention)."""
        self._start()
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _take(self) -> list[_Job]:
        """Wait for a first job, then gather more until ``max_names`` or the wait runs out."""
        loop = asyncio.get_running_loop()
        jobs = [await self._queue.get()]
        n = len(jobs[0].names)
        deadline = loop.time() + self.wait
        while n < self.max_names:
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
        return jobs

    async def _collect(self) -> None:
        while True:
            jobs = await self._take()
            names = [name for job in jobs for name in job.names]
            try:
                results = await self.run(self.predict, names, max(job.top for job in jobs))
            except Exception as e:  # the model failed: every caller of this batch hears it
                log.exception("prediction failed for a batch of %d names", len(names))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            start = 0
            for job in jobs:
                mine = results[start: start + len(job.names)]
                start += len(job.names)
                for r in mine:
                    r.predictions = r.predictions[: job.top]
                if not job.future.done():  # a caller that went away has a cancelled future
                    job.future.set_result(mine)

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
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
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
        super().__init__(413, f"request body over the limit of {max_body:,} bytes")


# ------------------------------------------------------------------------------------------- the app

class ErrorResponse(BaseModel):
    detail: str


#: The error answers each endpoint declares in its OpenAPI schema (422, a malformed request, FastAPI adds).
ERRORS = {400: {"model": ErrorResponse, "description": "a name that cannot be read, or no names"},
          413: {"model": ErrorResponse, "description": f"more than {MAX_NAMES} names in one request, or a request "
                                                        "body over the server's --max-body"},
          503: {"model": ErrorResponse, "description": "too many names waiting for the model (the server's "
                                                        "--queue-limit); the Retry-After header says when to retry"}}


def _which(i: int, name: str, single: bool) -> str:
    """How an error names a name: by itself for a single GET, by position and start in a list."""
    return f"name {name[:20]!r}" if single else f"name {i} ({name[:20]!r})"


def _check(names: list[str], *, single: bool = False) -> None:
    if len(names) > MAX_NAMES:
        raise HTTPException(413, f"too many names: {len(names)} in one request; at most {MAX_NAMES}")
    if not names:
        raise HTTPException(400, "no names given")
    for i, name in enumerate(names):
        if len(name) > MAX_NAME_CHARS:
            raise HTTPException(400, f"{_which(i, name, single)}... is {len(name)} characters long; "
                                     f"at most {MAX_NAME_CHARS}")


METRICS_DESCRIPTION = (
    "metrics.valid: figures on the validation names, which picked the best epoch and fitted the temperature "
    "(so slightly optimistic); metrics.test: figures on held-out test names that training and selection never "
    "saw. Each has accuracy, macro_f1 and n (names). Missing when the training run had no such split.")


def create_app(predictor: Predictor | None = None, model_path: str | os.PathLike | None = None,
               config: ServeConfig | None = None) -> FastAPI:
    """The app around ``predictor`` (default: ``model_path`` or ``config.model`` loaded at ``config.precision``)."""
    config = config or ServeConfig(model=str(model_path) if model_path else None)
    predictor = predictor or Predictor.load(config.model, precision=config.precision)
    ck = predictor.checkpoint
    batcher = Batcher(predictor.predict, max_names=config.batch_names, wait_ms=config.batch_wait_ms,
                      queue_limit=config.queue_limit, thread_setup=_torch_threads(config.threads))
    app = FastAPI(title="nameorigin", version=__version__,
                  description="Which language does a name come from? Character-level recurrent networks.",
                  lifespan=_lifespan(batcher))
    app.add_middleware(BodyLimit, max_body=config.max_body)
    app.state.batcher = batcher
    page = (resources.files("nameorigin") / "static" / "index.html").read_text(encoding="utf-8")
    retry_after = str(max(1, math.ceil(config.batch_wait_ms / 1000)))

    @app.exception_handler(Overloaded)
    async def overloaded(request, exc: Overloaded):
        return JSONResponse({"detail": f"the server is busy: {exc}; try again shortly"}, status_code=503,
                            headers={"Retry-After": retry_after})

    async def predict(names: list[str], top: int, *, single: bool = False) -> PredictResponse:
        _check(names, single=single)
        results = await batcher.submit(names, top)
        for i, r in enumerate(results):
            if r.error:
                raise HTTPException(400, r.error if single else f"name {i}: {r.error}")
        return PredictResponse(results=[NameResult(**r.to_dict()) for r in results])

    @app.get("/api/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict_one(name: str = Query(..., description="a name"), top: int = Query(3, ge=1, le=MAX_TOP)):
        """The top languages of one name."""
        return await predict([name], top, single=True)

    @app.post("/api/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict_many(request: PredictRequest):
        """The top languages of each of up to 1,000 names."""
        return await predict(request.names, request.top)

    @app.get("/api/attention", response_model=AttentionResponse, responses=ERRORS)
    async def attention(name: str = Query(...)):
        """Each character of the folded name with its attention weight (gru-attention models)."""
        if not predictor.has_attention:
            raise HTTPException(400, f"this model ({ck.config.name}) has no attention")
        _check([name], single=True)
        r = (await batcher.run(lambda: predictor.predict([name], top=1, attention=True)))[0]
        if r.error:
            raise HTTPException(400, r.error)
        return AttentionResponse(name=name, folded=r.folded, language=r.predictions[0]["language"],
                                 probability=r.predictions[0]["probability"], characters=list(r.folded),
                                 weights=r.attention)

    @app.get("/api/model")
    async def model_info():
        """The model's name, sizes, labels, training data fingerprint, its validation and held-out test
        metrics (see ``metrics_description``), and how this server runs it."""
        metrics = ck.meta.get("metrics") or {}
        figures = {split: {k: v for k, v in (m or {}).items() if k in {"accuracy", "macro_f1", "n"}}
                   for split, m in metrics.items() if m}
        return {"model": ck.config.to_dict(), "has_attention": predictor.has_attention, "labels": ck.labels,
                "parameters": predictor.n_parameters,
                "data_fingerprint": ck.meta.get("data_fingerprint"), "metrics": figures,
                "metrics_description": METRICS_DESCRIPTION,
                "training": {k: ck.meta.get("training", {}).get(k) for k in ("mode", "preset", "n_train", "n_valid",
                                                                              "n_test", "split")},
                "serving": {"precision": predictor.precision, "batch_names": config.batch_names,
                            "batch_wait_ms": config.batch_wait_ms, "queue_limit": config.queue_limit,
                            "max_body": config.max_body}}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """As FastAPI answers, except that a 405's ``Allow`` lists every method of the path (GET and POST of
        /api/predict are two routes, and Starlette would name only the first)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = sorted({m for r in app.routes if getattr(r, "path", None) == request.url.path
                              for m in (getattr(r, "methods", None) or ())})
            headers["Allow"] = ", ".join(methods)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    return app


def _torch_threads(threads: int) -> Callable[[], None] | None:
    if not threads:
        return None

    def setup() -> None:
        import torch
        torch.set_num_threads(threads)
    return setup


def _lifespan(batcher: Batcher):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
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
