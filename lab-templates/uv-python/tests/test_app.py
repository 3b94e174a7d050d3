"""The lab tests: run by `lab.test` against the deployed app at LAB_URL."""

import json
import os
import urllib.request

LAB_URL = os.environ["LAB_URL"].rstrip("/")


def get(path):
    with urllib.request.urlopen(f"{LAB_URL}{path}", timeout=10) as r:
        return r.status, json.load(r)


def test_healthz():
    assert get("/healthz") == (200, {"ok": True})


def test_greet():
    status, body = get("/greet?name=lab")
    assert status == 200
    assert body["greeting"].endswith(", lab!")
