"""The HTTP API through FastAPI's test client, the real server over loopback, and the page in Chromium."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from nameorigin.server import MAX_NAMES, create_app


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
    assert r.status_code == 400 and r.json()["detail"].startswith("name 1")


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
