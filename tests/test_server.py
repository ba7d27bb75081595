"""The HTTP API through FastAPI's test client, the real server over loopback, and the page in Chromium."""
import asyncio
import gc
import threading
import json
import os
import shutil
import socket
import subprocess
import sys
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
    assert m["model"]["name"] == "gru-attention" and len(m["labels"]) == 18 and len(m["data_fingerprint"]) == 64
    assert m["has_attention"] is True and m["parameters"] > 0
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


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

def test_too_many_names_is_413(client):
    r = client.post("/api/predict", json={"names": ["Abel"] * (MAX_NAMES + 1)})
    assert r.status_code == 413 and "at most 1000" in r.json()["detail"]
    assert client.post("/api/predict", json={"names": ["Abel"] * MAX_NAMES}).status_code == 200


def test_too_long_name_is_400(client):
    r = client.get("/api/predict", params={"name": "a" * 65})
    assert r.status_code == 400 and "65 characters long" in r.json()["detail"]
    r = client.post("/api/predict", json={"names": ["Abel", "b" * 10_000]})
    assert r.status_code == 400 and r.json()["detail"].startswith("name 2 of the request ('bbbbbbbbbbbbbbbbbbbb…')")
    r = client.post("/api/predict", json={"names": ["Abel", "1234"]})  # counted from 1, as a person counts
    assert r.status_code == 400 and r.json()["detail"].startswith("name 2 of the request: ")


def test_a_single_names_error_says_the_name(client):
    detail = client.get("/api/predict", params={"name": "1234"}).json()["detail"]
    assert "'1234'" in detail and "name 0" not in detail
    detail = client.get("/api/predict", params={"name": "z" * 70}).json()["detail"]
    assert detail.startswith("name 'zzzzzzzzzzzzzzzzzzzz…' is 70 characters long")


def test_model_metrics_say_what_they_are(client):
    m = client.get("/api/model").json()
    assert set(m["metrics"]) <= {"valid", "test", "held_out"} and "held-out" in m["metrics_description"]
    held_out = m["metrics"]["held_out"]  # the bundled model's: its preset's 80/20 run, saying so
    assert 0.5 < held_out["accuracy"] < 1 and held_out["n"] > 1000 and "80 %" in held_out["source"]
    assert m["serving"]["precision"] == "fp32" and m["serving"]["batch_names"] == ServeConfig.batch_names


def test_name_that_folds_to_nothing_is_400(client):
    r = client.get("/api/predict", params={"name": "1234"})
    assert r.status_code == 400 and "folds to nothing" in r.json()["detail"]
    r = client.post("/api/predict", json={"names": []})
    assert r.status_code == 400


@pytest.mark.parametrize("body", ['{"names": ["Abel"', '{"names": "Abel"}', '{"names": [1, 2]}',
                                  '{"names": ["Abel"], "top": "many"}', '{"names": ["Abel"], "top": 0}', "[]"])
def test_malformed_json_or_wrong_types_is_422(client, body):
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422


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

NAMES = ["Hinton", "Schmidhuber", "Zhou", "Nakamura", "Rossi", "Kowalski", "Dubois", "Papadopoulos", "Nguyen",
         "O'Brien", "Novak", "Silva", "Kim", "Haddad", "Ivanov", "MacLeod", "Garcia", "Jansen"]


def async_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30)


def same(got: list[dict], want: list[dict]) -> None:
    """Same names, languages and order; probabilities equal up to float rounding (a batch's kernels differ)."""
    assert [(x["name"], [p["language"] for p in x["predictions"]]) for x in got] == \
           [(x["name"], [p["language"] for p in x["predictions"]]) for x in want]
    assert all(abs(p["probability"] - q["probability"]) < 1e-5
               for x, y in zip(got, want) for p, q in zip(x["predictions"], y["predictions"]))


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
    requests = [NAMES[i % len(NAMES):] + NAMES[: i % len(NAMES)] for i in range(40)]  # 40 different orders
    tops = [1 + i % 5 for i in range(40)]
    expected = [[r.to_dict() for r in real(names, top)] for names, top in zip(requests, tops)]

    async def run():
        async with async_client(app) as client:
            posts = [client.post("/api/predict", json={"names": names, "top": top}) for names, top in zip(requests, tops)]
            gets = [client.get("/api/predict", params={"name": name, "top": 2}) for name in NAMES]
            return await asyncio.gather(*posts, *gets)

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    for r, want in zip(responses, expected):
        same(r.json()["results"], want)
    for r, name in zip(responses[len(requests):], NAMES):
        same(r.json()["results"], [real([name], 2)[0].to_dict()])
    assert sum(batches) == len(requests) * len(NAMES) + len(NAMES)
    assert len(batches) < len(responses) / 4  # gathered: far fewer model calls than requests


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
    r = client.post("/api/predict", content=(body[i: i + 100].encode() for i in range(0, len(body), 100)),
                    headers={"content-type": "application/json"})  # streamed: no Content-Length
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
    proc = subprocess.Popen([sys.executable, "-m", "nameorigin", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode())
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def start(*args: str) -> tuple[subprocess.Popen, str, str]:
    """``nameorigin serve`` on a free port; returns the process, its first line and its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nameorigin", "serve", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return proc, first, url
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                raise RuntimeError(first + proc.stdout.read())
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
    request = urllib.request.Request(server + "/api/predict", data=json.dumps({"names": ["x" * 70]}).encode(),
                                     headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400
    with urllib.request.urlopen(server + "/healthz", timeout=10) as r:
        assert r.status == 200


# --- the page in headless Chromium ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_in_headless_chromium(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.fill("#name", "Schmidhuber")
            page.click("#go")
            page.wait_for_selector("#results .row .language", timeout=15_000)
            assert page.inner_text("#results .row .language >> nth=0") == "German"
            assert page.locator("#results .row").count() == 5
        finally:
            browser.close()
