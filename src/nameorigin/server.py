"""The HTTP API and its web page (FastAPI). ``create_app`` builds the app around one :class:`Predictor`."""
from __future__ import annotations

import os
from importlib import resources
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .predict import Predictor
from .text import MAX_NAME_CHARS
from .trust import TrustError

MAX_NAMES = 1000
MAX_TOP = 100


Coverage = Field(None, gt=0, lt=1, description="with a value, each name gets the conformal set of languages that "
                                                 "holds the true one with this probability, e.g. 0.9")
PRIOR_HELP = ("the language mix of the names: uniform, auto (estimated on them by EM), or (POST) an object of "
              "language: weight; default: the training data's mix")


class PredictRequest(BaseModel):
    names: list[str] = Field(..., description=f"at most {MAX_NAMES} names, each at most {MAX_NAME_CHARS} characters")
    top: int = Field(3, ge=1, le=MAX_TOP)
    coverage: float | None = Coverage
    prior: Literal["uniform", "auto"] | dict[str, float] | None = Field(None, description=PRIOR_HELP)


class LanguageProbability(BaseModel):
    language: str
    probability: float


class NameResult(BaseModel):
    name: str
    predictions: list[LanguageProbability]
    out_of_scope: float | None = Field(None, description="0..1, higher = less like any of the model's languages; "
                                                         "null when the model has no detector")
    abstained: bool = Field(False, description="the answer is unsure; its languages are still given")
    reason: Literal["low-confidence", "out-of-scope"] | None = None
    set: list[str] | None = Field(None, description="with coverage: the prediction set, most probable first")


class PredictResponse(BaseModel):
    results: list[NameResult]
    prior: dict[str, float] | None = Field(None, description="the language mix used (prior=auto: the one estimated)")


class AttentionResponse(BaseModel):
    name: str
    folded: str
    language: str
    probability: float
    characters: list[str]
    weights: list[float]


class ErrorResponse(BaseModel):
    detail: str


#: The error answers each endpoint declares in its OpenAPI schema (422, a malformed request, FastAPI adds).
ERRORS = {400: {"model": ErrorResponse, "description": "a name that cannot be read, or no names"},
          413: {"model": ErrorResponse, "description": f"more than {MAX_NAMES} names in one request"}}


def _check(names: list[str]) -> None:
    if len(names) > MAX_NAMES:
        raise HTTPException(413, f"too many names: {len(names)} in one request; at most {MAX_NAMES}")
    if not names:
        raise HTTPException(400, "no names given")
    for i, name in enumerate(names):
        if len(name) > MAX_NAME_CHARS:
            raise HTTPException(400, f"name {i} ({name[:20]!r}...) is {len(name)} characters long; "
                                     f"at most {MAX_NAME_CHARS}")


def create_app(predictor: Predictor | None = None, model_path: str | os.PathLike | None = None) -> FastAPI:
    """The app. Endpoints are ``async`` and run the model inline: one inference at a time on the event loop,
    so torch's own threads are not oversubscribed by a thread pool (a request holds at most 1,000 names)."""
    predictor = predictor or Predictor.load(model_path)
    ck = predictor.checkpoint
    app = FastAPI(title="nameorigin", version=__version__,
                  description="Which language does a name come from? Character-level recurrent networks.")
    page = (resources.files("nameorigin") / "static" / "index.html").read_text(encoding="utf-8")

    def predict(names: list[str], top: int, coverage: float | None = None, prior=None) -> PredictResponse:
        _check(names)
        try:
            results, used = predictor.predict_with_prior(names, top, coverage=coverage, prior=prior)
        except TrustError as e:
            raise HTTPException(400, str(e).replace("--prior", "prior").replace("--coverage", "coverage")) from None
        for i, r in enumerate(results):
            if r.error:
                raise HTTPException(400, f"name {i}: {r.error}")
        return PredictResponse(results=[NameResult(**r.to_dict()) for r in results], prior=used)

    @app.get("/api/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict_one(name: str = Query(..., description="a name"), top: int = Query(3, ge=1, le=MAX_TOP),
                          coverage: float | None = Query(None, gt=0, lt=1, description=Coverage.description),
                          prior: Literal["uniform", "auto"] | None = Query(None, description=PRIOR_HELP)):
        """The top languages of one name, its out-of-scope score and whether the answer abstains."""
        return predict([name], top, coverage, prior)

    @app.post("/api/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict_many(request: PredictRequest):
        """The top languages of each of up to 1,000 names (and the language mix used)."""
        return predict(request.names, request.top, request.coverage, request.prior)

    @app.get("/api/attention", response_model=AttentionResponse, responses=ERRORS)
    async def attention(name: str = Query(...)):
        """Each character of the folded name with its attention weight (gru-attention models)."""
        if not predictor.has_attention:
            raise HTTPException(400, f"this model ({ck.config.name}) has no attention")
        _check([name])
        r = predictor.predict([name], top=1, attention=True)[0]
        if r.error:
            raise HTTPException(400, r.error)
        return AttentionResponse(name=name, folded=r.folded, language=r.predictions[0]["language"],
                                 probability=r.predictions[0]["probability"], characters=list(r.folded),
                                 weights=r.attention)

    @app.get("/api/model")
    async def model_info():
        """The model's name, sizes, labels, training data fingerprint and held-out metrics."""
        metrics = ck.meta.get("metrics") or {}
        held_out = {split: {k: v for k, v in (m or {}).items() if k in {"accuracy", "macro_f1", "n"}}
                    for split, m in metrics.items() if m}
        return {"model": ck.config.to_dict(), "has_attention": predictor.has_attention, "labels": ck.labels,
                "parameters": sum(p.numel() for p in predictor.model.parameters()),
                "data_fingerprint": ck.meta.get("data_fingerprint"), "metrics": held_out,
                "training": {k: ck.meta.get("training", {}).get(k) for k in ("mode", "preset", "n_train", "n_valid",
                                                                              "n_test", "split")}}

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
