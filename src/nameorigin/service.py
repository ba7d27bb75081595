"""The service's settings, apart from the web framework: the command line reads their defaults without
importing FastAPI (``nameorigin.server.ServeConfig`` is this same class)."""

from __future__ import annotations

from dataclasses import dataclass


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
    gc_freeze: bool = True  # move what start-up built out of the garbage collector's reach (see _lifespan)
    allowed_hosts: list[str] | None = None  # Host headers answered (TrustedHostMiddleware); None: any (`serve`
    # always gives a list: the bound address and the localhost names unless --allowed-hosts says otherwise)
    api_docs: bool = False  # serve /docs and /redoc (their pages load Swagger UI / ReDoc from a CDN)
    model_sha256: str | None = None  # the checkpoint file's SHA-256 that loading insists on
    first_model: str | None = None  # the first-name checkpoint; None: the bundled one when the package has one
    limit_concurrency: int = 256  # connections and tasks at once; above it uvicorn answers 503 and closes
    timeout_keep_alive: float = 30.0  # seconds an idle keep-alive connection is held (longer than a slow answer)
    request_timeout: float = 30.0  # seconds a request's headers and body may take to arrive (RequestDeadline)
