"""The HTTP API through FastAPI's test client, the real server over loopback, and the page in Chromium."""

import asyncio
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
from fastapi.testclient import TestClient

from nameorigin.cli import build_parser
from nameorigin.predict import Predictor
from nameorigin.server import MAX_NAMES, ServeConfig, create_app


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(), raise_server_exceptions=False)


def test_get_predict(client):
    r = client.get("/api/predict", params={"name": "Hinton", "top": 3})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["name"] == "Hinton" and len(result["predictions"]) == 3
    assert result["predictions"][0]["language"] in {"English", "Scottish"}


def test_post_predict(client):
    r = client.post("/api/predict", json={"names": ["Schmidhuber", "Zhou"], "top": 2})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["predictions"][0]["language"] for x in results] == ["German", "Chinese"]
    assert all(len(x["predictions"]) == 2 for x in results)


def test_model_and_health(client):
    m = client.get("/api/model").json()
    assert m["model"]["name"] == "mixed" and len(m["labels"]) == 18 and len(m["data_fingerprint"]) == 64
    assert [member["name"] for member in m["model"]["mix"]] == ["gru-attention", "ngram-lr"]  # the bundled pair
    assert m["has_attention"] is True and m["parameters"] > 0
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # off by default
    docs = TestClient(create_app(Predictor.load(), config=ServeConfig(api_docs=True)))
    assert docs.get("/docs").status_code == 200 and docs.get("/redoc").status_code == 200


def test_attention_on_a_model_without_it_is_400(tmp_path):
    from conftest import train_tiny

    _, model = train_tiny(tmp_path, "gru", "--hidden", "8", "--epochs", "1")
    r = TestClient(create_app(model_path=model)).get("/api/attention", params={"name": "Hinton"})
    assert r.status_code == 400 and "no attention" in r.json()["detail"]


def test_attention_of_the_bundled_model(client):
    body = client.get("/api/attention", params={"name": "Schmidhuber"}).json()
    assert body["characters"] == list("Schmidhuber") and abs(sum(body["weights"]) - 1) < 1e-4


def test_attention_with_an_attention_model(tmp_path):
    from conftest import train_tiny

    _, model = train_tiny(tmp_path, "gru-attention", "--hidden", "8", "--epochs", "2")
    r = TestClient(create_app(model_path=model)).get("/api/attention", params={"name": "Kalov"})
    assert r.status_code == 200
    body = r.json()
    assert body["characters"] == list("Kalov") and abs(sum(body["weights"]) - 1) < 1e-4


# --- limits and bad input ------------------------------------------------------------------------------


def test_too_many_or_no_names_is_422_as_the_schema_says(client):
    r = client.post("/api/predict", json={"names": ["Abel"] * (MAX_NAMES + 1)})
    assert r.status_code == 422 and "at most 1000" in r.text
    assert client.post("/api/predict", json={"names": ["Abel"] * MAX_NAMES}).status_code == 200
    assert client.post("/api/predict", json={"names": []}).status_code == 422
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]["properties"]["names"]
    assert schema["minItems"] == 1 and schema["maxItems"] == MAX_NAMES and "error" in schema["description"]


def test_a_get_name_too_long_or_empty_is_422_as_the_schema_says(client):
    for name in ("a" * 65, ""):
        r = client.get("/api/predict", params={"name": name})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "name"]
    (name,) = [
        p
        for p in client.get("/openapi.json").json()["paths"]["/api/predict"]["get"]["parameters"]
        if p["name"] == "name"
    ]
    assert name["schema"]["minLength"] == 1 and name["schema"]["maxLength"] == 64


def test_an_unreadable_name_in_a_post_is_an_error_entry_in_its_place(client):
    body = b'{"names": ["Abel", "\\ud800", "1234", "%s", " ", "Zhou"]}' % (b"b" * 10_000)
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["name"] for x in results[:3]] == ["Abel", "\ud800", "1234"] and results[4]["name"] == " "
    assert [x["error"] is None for x in results] == [True, False, False, False, False, True]
    assert "lone surrogate" in results[1]["error"] and "'1234'" in results[2]["error"]
    assert "10000 characters" in results[3]["error"].replace(",", "")
    assert all(x["predictions"] == [] for x in results[1:5]) and results[5]["predictions"][0]["language"] == "Chinese"
    alone = client.post("/api/predict", json={"names": ["Abel", "Zhou"]}).json()["results"]
    assert [results[0], results[5]] == alone


def test_a_single_names_error_says_the_name(client):
    r = client.get("/api/predict", params={"name": "1234"})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert "'1234'" in result["error"] and result["predictions"] == []
    a = client.get("/api/attention", params={"name": "1234"}).json()
    assert "'1234'" in a["error"] and a["characters"] == [] and a["language"] is None


def test_model_metrics_say_what_they_are(client):
    m = client.get("/api/model").json()
    assert set(m["metrics"]) <= {"valid", "test", "held_out"} and "held-out" in m["metrics_description"]
    held_out = m["metrics"]["held_out"]  # the bundled model's: its preset's 80/20 run, saying so
    assert 0.5 < held_out["accuracy"] < 1 and held_out["n"] > 1000 and "80 %" in held_out["source"]
    assert m["serving"]["precision"] == "fp32" and m["serving"]["batch_names"] == ServeConfig.batch_names


@pytest.mark.parametrize(
    "field, value",
    [
        ("coverage", "NaN"),
        ("coverage", "Infinity"),
        ("top", "-Infinity"),
        ("coverage", "1e400"),
        ("names", "NaN"),
        ("names", "[NaN]"),
        ("prior", '{"English": NaN}'),
        ("prior", '{"English": 1e400}'),
        ("top", '"\\udc80"'),
    ],
)
def test_non_finite_numbers_are_422_with_a_message_not_500(client, field, value):
    body = {"names": '["Abel"]', "top": "3", field: value}
    text = "{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}"
    r = client.post("/api/predict", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["msg"]
    assert client.get("/api/predict", params={"name": "Abel", "coverage": "nan"}).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        '{"names": ["Abel"',
        '{"names": "Abel"}',
        '{"names": [1, 2]}',
        '{"names": ["Abel"], "top": "many"}',
        '{"names": ["Abel"], "top": 0}',
        "[]",
    ],
)
def test_malformed_json_or_wrong_types_is_422(client, body):
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_a_form_body_is_422_with_a_hint_to_send_json(client):
    """curl -d without a content type sends a form: the 422 says to send JSON (a JSON body gets no hint)."""
    r = client.post("/api/predict", content="names=Abel", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and "content-type: application/json" in r.json()["hint"]
    assert "application/x-www-form-urlencoded" in r.json()["hint"]
    r = client.post("/api/predict", content="[]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "hint" not in r.json()


def test_missing_or_bad_query_is_422(client):
    assert client.get("/api/predict").status_code == 422
    assert client.get("/api/predict", params={"name": "Abel", "top": "x"}).status_code == 422


def test_bad_input_does_not_stop_the_server(client):
    for _ in range(3):
        client.post("/api/predict", content="{", headers={"content-type": "application/json"})
        client.get("/api/predict", params={"name": "\x00" * 3})
    assert client.get("/api/predict", params={"name": "Zhou"}).status_code == 200


def test_page_is_served_without_external_resources(client):
    html = client.get("/").text
    assert "<form" in html and "/api/predict" in html
    assert "http://" not in html and "https://" not in html


# --- batching, back-pressure, the body limit ---------------------------------------------------------

NAMES = [
    "Hinton",
    "Schmidhuber",
    "Zhou",
    "Nakamura",
    "Rossi",
    "Kowalski",
    "Dubois",
    "Papadopoulos",
    "Nguyen",
    "O'Brien",
    "Novak",
    "Silva",
    "Kim",
    "Haddad",
    "Ivanov",
    "MacLeod",
    "Garcia",
    "Jansen",
]


def async_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30)


def same(got: list[dict], want: list[dict]) -> None:
    """Same names, languages and order; probabilities equal up to float rounding (a batch's kernels differ)."""
    assert [(x["name"], [p["language"] for p in x["predictions"]]) for x in got] == [
        (x["name"], [p["language"] for p in x["predictions"]]) for x in want
    ]
    assert all(
        abs(p["probability"] - q["probability"]) < 1e-5
        for x, y in zip(got, want, strict=False)
        for p, q in zip(x["predictions"], y["predictions"], strict=False)
    )


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_answers_in_order():
    predictor = Predictor.load()
    batches: list[int] = []
    real = predictor.predict
    batched = predictor.predict_with_prior  # what the batcher calls

    def counted(names, top, **kw):  # model calls of the batcher's thread only, not this test's own
        if threading.current_thread().name.startswith("nameorigin-model"):
            batches.append(len(names))
        return batched(names, top, **kw)

    predictor.predict_with_prior = counted
    app = create_app(predictor, config=ServeConfig(batch_names=10_000, batch_wait_ms=200))
    requests = [NAMES[i % len(NAMES) :] + NAMES[: i % len(NAMES)] for i in range(40)]  # 40 different orders
    tops = [1 + i % 5 for i in range(40)]
    expected = [[r.to_dict() for r in real(names, top)] for names, top in zip(requests, tops, strict=True)]

    async def run():
        async with async_client(app) as client:
            posts = [
                client.post("/api/predict", json={"names": names, "top": top})
                for names, top in zip(requests, tops, strict=True)
            ]
            gets = [client.get("/api/predict", params={"name": name, "top": 2}) for name in NAMES]
            return await asyncio.gather(*posts, *gets)

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    for r, want in zip(responses, expected, strict=False):
        same(r.json()["results"], want)
    for r, name in zip(responses[len(requests) :], NAMES, strict=False):
        same(r.json()["results"], [real([name], 2)[0].to_dict()])
    assert sum(batches) == len(requests) * len(NAMES) + len(NAMES)
    assert len(batches) < len(responses) / 4  # gathered: far fewer model calls than requests


def test_a_request_with_a_bad_name_beside_others_hurts_none_of_them():
    """The issue's probe: a lone surrogate among concurrent ordinary requests. Every request is answered 200, the
    bad name gets its error entry, and the others get exactly what they get alone."""
    predictor = Predictor.load()
    app = create_app(predictor, config=ServeConfig(batch_names=10_000, batch_wait_ms=100))
    bad = b'{"names": ["Smith", "\\ud800"]}'

    async def run():
        async with async_client(app) as client:
            posts = [client.post("/api/predict", json={"names": NAMES[i % 5 : i % 5 + 3]}) for i in range(30)]
            evil = [
                client.post("/api/predict", content=bad, headers={"content-type": "application/json"}) for _ in range(5)
            ]
            return await asyncio.gather(*posts, *evil)

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 35
    for i, r in enumerate(responses[:30]):
        same(r.json()["results"], [p.to_dict() for p in predictor.predict(NAMES[i % 5 : i % 5 + 3])])
    assert all("lone surrogate" in r.json()["results"][1]["error"] for r in responses[30:])


def test_when_a_joined_model_call_fails_each_request_is_retried_alone():
    """Isolation as a rule, whatever the fault: only the request whose names break the model call hears of it."""
    predictor = Predictor.load()
    real = predictor.predict_with_prior
    calls: list[list[str]] = []

    def fragile(names, top, **kw):
        calls.append(list(names))
        if "Boom" in names:
            raise RuntimeError("the model fell over")
        return real(names, top, **kw)

    predictor.predict_with_prior = fragile
    app = create_app(predictor, config=ServeConfig(batch_names=10_000, batch_wait_ms=200))

    async def run():
        async with async_client(app) as client:
            return await asyncio.gather(
                *[
                    client.post("/api/predict", json={"names": names})
                    for names in (["Hinton"], ["Boom", "Zhou"], ["Rossi"], ["Kim"])
                ]
            )

    codes = [r.status_code for r in asyncio.run(run())]
    assert codes == [200, 500, 200, 200]
    assert any(len(c) > 2 for c in calls) and ["Boom", "Zhou"] in calls  # joined first, then alone


def test_head_is_answered_wherever_get_is(client):
    for path in ("/healthz", "/", "/api/model", "/api/predict?name=Abel", "/openapi.json"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0, path
    assert client.head("/api/predict").status_code == 422  # as its GET: no name
    assert not any(op == "head" for ops in client.get("/openapi.json").json()["paths"].values() for op in ops)


def test_every_answer_sends_the_security_headers(client):
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self' 'sha256-" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "https:" not in policy
    for r in (page, client.get("/api/model"), client.get("/nowhere")):
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "content-security-policy" in r.headers
    import base64
    import hashlib
    import re

    script = re.search(r"<script>(.*?)</script>", page.text, re.DOTALL).group(1)
    assert base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() in policy  # the page's own script


def test_only_the_allowed_hosts_are_answered():
    app = create_app(Predictor.load(), config=ServeConfig(allowed_hosts=["localhost", "127.0.0.1"]))
    ok = TestClient(app, base_url="http://localhost:8000")
    assert ok.get("/healthz").status_code == 200
    evil = TestClient(app, base_url="http://evil.example", follow_redirects=False)
    for path in ("/healthz", "/docs/", "/api/predict?name=Abel"):
        r = evil.get(path)
        assert r.status_code == 400 and "evil.example" not in r.headers.get("location", "")
    assert evil.get("/healthz", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_serve_allows_the_bound_address_and_localhost_names_by_default():
    from nameorigin.cli import allowed_hosts

    assert set(allowed_hosts(None, "127.0.0.1")) >= {"127.0.0.1", "localhost", "::1"}
    assert "10.1.2.3" in allowed_hosts(None, "10.1.2.3")
    assert allowed_hosts(["api.example.org", "*.example.net"], "0.0.0.0") == ["api.example.org", "*.example.net"]


def test_a_caller_alone_is_not_kept_waiting_for_a_batch():
    """With a 10 s batch wait, requests that come one after another are answered at once (nobody to wait for)."""
    app = create_app(Predictor.load(), config=ServeConfig(batch_wait_ms=10_000))

    async def run():
        async with async_client(app) as client:
            started = time.perf_counter()
            answers = [await client.get("/api/predict", params={"name": name}) for name in ("Hinton", "Zhou", "Rossi")]
            return answers, time.perf_counter() - started

    answers, seconds = asyncio.run(run())
    assert [r.json()["results"][0]["name"] for r in answers] == ["Hinton", "Zhou", "Rossi"]
    assert seconds < 5  # one wait alone would be 10 s


def test_the_server_freezes_what_it_built_at_start_out_of_the_collectors_reach():
    gc.unfreeze()
    with TestClient(create_app(Predictor.load(), config=ServeConfig(gc_freeze=False))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0  # the setting that shows what the freeze is worth
    with TestClient(create_app(Predictor.load())) as client:  # runs the lifespan
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    gc.unfreeze()


def test_a_full_queue_answers_503_with_retry_after_and_never_hangs():
    predictor = Predictor.load()
    entered, release = threading.Event(), threading.Event()
    real = predictor.predict_with_prior

    def blocking(names, top, **kw):
        entered.set()
        assert release.wait(30)
        return real(names, top, **kw)

    predictor.predict_with_prior = blocking
    app = create_app(predictor, config=ServeConfig(batch_names=1, batch_wait_ms=0, queue_limit=2))

    async def run():
        async with async_client(app) as client:
            first = asyncio.ensure_future(client.get("/api/predict", params={"name": "Hinton"}))
            while not entered.is_set():  # the first request is in the model; the queue is empty
                await asyncio.sleep(0.01)
            queued = [asyncio.ensure_future(client.get("/api/predict", params={"name": n})) for n in ("Zhou", "Rossi")]
            await asyncio.sleep(0.1)
            busy = await asyncio.wait_for(client.get("/api/predict", params={"name": "Kim"}), 5)
            too_many = await asyncio.wait_for(client.post("/api/predict", json={"names": ["Kim", "Li"]}), 5)
            release.set()
            return busy, too_many, await asyncio.gather(first, *queued)

    busy, too_many, served = asyncio.run(run())
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["detail"]
    assert too_many.status_code == 503
    assert [r.status_code for r in served] == [200, 200, 200]
    assert [r.json()["results"][0]["name"] for r in served] == ["Hinton", "Zhou", "Rossi"]


def test_a_request_larger_than_the_whole_queue_is_413_not_a_503_to_retry_forever():
    client = TestClient(create_app(Predictor.load(), config=ServeConfig(queue_limit=50)))
    r = client.post("/api/predict", json={"names": ["Abel"] * 60})
    assert r.status_code == 413 and "--queue-limit" in r.json()["detail"] and "retry-after" not in r.headers
    assert client.post("/api/predict", json={"names": ["Abel"] * 50}).status_code == 200


def test_an_oversized_body_is_413_before_it_is_parsed():
    client = TestClient(create_app(config=ServeConfig(max_body=1000)))
    body = json.dumps({"names": ["Abel"] * 300})  # about 2,400 bytes
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "1,000 bytes" in r.json()["detail"]
    r = client.post(
        "/api/predict",
        content=(body[i : i + 100].encode() for i in range(0, len(body), 100)),
        headers={"content-type": "application/json"},
    )  # streamed: no Content-Length
    assert r.status_code == 413
    r = client.post("/api/predict", content="{" * 5000, headers={"content-type": "application/json"})
    assert r.status_code == 413  # not 422: never parsed
    assert client.post("/api/predict", json={"names": ["Abel"] * 100}).status_code == 200


def test_verbose_is_accepted_before_and_after_serve():
    parser = build_parser()
    assert parser.parse_args(["-v", "serve"]).verbose and parser.parse_args(["serve", "-v"]).verbose
    assert not parser.parse_args(["serve"]).verbose


# --- the real server over loopback -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nameorigin", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()) from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def start(*args: str) -> tuple[subprocess.Popen, str, str]:
    """``nameorigin serve`` on a free port; returns the process, its first line and its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nameorigin", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return proc, first, url
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                raise RuntimeError(first + proc.stdout.read()) from None
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"no answer from {url}")


def test_serve_prints_its_url_and_model_and_runs_worker_processes():
    proc, first, url = start("--workers", "2", "--precision", "int8")
    try:
        assert f"at {url}/" in first and "the bundled model" in first and "gru-attention" in first
        assert "int8" in first and "2 worker" in first
        with urllib.request.urlopen(url + "/api/predict?name=Schmidhuber", timeout=10) as r:
            assert json.load(r)["results"][0]["predictions"][0]["language"] == "German"
        with urllib.request.urlopen(url + "/api/model", timeout=10) as r:
            assert json.load(r)["serving"]["precision"] == "int8"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_real_server_over_http(server):
    with urllib.request.urlopen(server + "/api/predict?name=Schmidhuber&top=3", timeout=10) as r:
        assert r.status == 200
        assert json.load(r)["results"][0]["predictions"][0]["language"] == "German"
    request = urllib.request.Request(
        server + "/api/predict",
        data=json.dumps({"names": ["x" * 70]}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # a per-name fault: an error entry, not a refusal
        assert "70 characters" in json.load(r)["results"][0]["error"]
    with urllib.request.urlopen(urllib.request.Request(server + "/healthz", method="HEAD"), timeout=10) as r:
        assert r.status == 200 and r.read() == b"" and r.headers["x-content-type-options"] == "nosniff"
    with pytest.raises(urllib.error.HTTPError) as e:  # serve answers only its own host names by default
        urllib.request.urlopen(
            urllib.request.Request(server + "/healthz", headers={"host": "evil.example"}), timeout=10
        )
    assert e.value.code == 400


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends before it closes the connection, which it must do within ``seconds``."""
    sock.settimeout(seconds)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_slow_or_oversized_request_does_not_hold_its_connection():
    proc, _, url = start("--request-timeout", "1", "--max-body", "1000", "--limit-concurrency", "50")
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:  # headers that never end
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            t0 = time.monotonic()
            assert _closed_within(slow, 5) == b"" and time.monotonic() - t0 < 4
        with socket.create_connection(("127.0.0.1", port)) as big:  # a chunked body over the limit, never ended
            big.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"x" * 0x800 + b"\r\n"
            )
            t0 = time.monotonic()
            answer = _closed_within(big, 5)  # refused and closed at once, without the rest being read
            assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - t0 < 0.8  # before the 1 s deadline
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the page in headless Chromium ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
def test_page_in_headless_chromium(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(server + "/")
            page.fill("#name", "Schmidhuber")
            page.click("#go")
            page.wait_for_selector("#results .row .language", timeout=15_000)
            assert page.inner_text("#results .row .language >> nth=0") == "German"
            assert page.locator("#results .row").count() == 5
            page.wait_for_selector("#attention:not([hidden])", timeout=15_000)  # its script ran under the CSP
            page.fill("#name", "1234")
            page.click("#go")
            # a name's error entry is shown as the page's error (a locator, not wait_for_function: its string
            # would be evaluated as script, which the page's CSP rightly forbids)
            page.locator("#error", has_text="no letters").wait_for(timeout=15_000)
            assert not [m for m in console if "Content Security Policy" in m], console
        finally:
            browser.close()


def test_a_body_that_is_not_utf8_is_422_naming_the_byte(client):
    """FastAPI answered 400 "There was an error parsing the body" to bytes that are no UTF-8."""
    r = client.post(
        "/api/predict", content=b'{"names": ["Sm\xffith"], "top": 1}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", 14] and "not valid UTF-8 (byte 14" in error["msg"]
    ok = client.post("/api/predict", json={"names": ["Smith"], "top": 1})  # the next request is answered
    assert ok.status_code == 200
