"""The summary a run's load test hands back: compact enough for a ConfigMap, read back whole, written to a
file or created as a ConfigMap with a bearer token (against a local stand-in of the API server), and
the flags that say where, refused with the flag named."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from bakeoff_loadtest.configmap_writer import Credentials, kubeconfig_credentials, parse_target, write_configmap
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.run_summary import SUMMARY_KEY, SummaryError, compact, summary_text, write_file

from tests.bakeoffs.builders import bakeoff, run_result

RESULT = run_result(bakeoff(), "dense-int4")


def test_the_summary_is_the_result_without_the_itl_reservoir() -> None:
    text = summary_text(RESULT)
    back = RunResult.model_validate_json(text)
    assert all(not p.itl_samples_ms for p in back.points)
    assert back.points[0].requests == RESULT.points[0].requests
    assert back.model_dump(exclude={"points"}) == RESULT.model_dump(exclude={"points"})
    assert [p.model_dump(exclude={"itl_samples_ms"}) for p in back.points] == [
        p.model_dump(exclude={"itl_samples_ms"}) for p in RESULT.points
    ]


def test_a_summary_too_large_keeps_fewer_request_samples_and_says_so() -> None:
    full = len(summary_text(RESULT))
    small = compact(RESULT, limit=full // 2)
    assert len(small.model_dump_json()) <= full // 2
    assert 0 < len(small.points[0].requests) < len(RESULT.points[0].requests)
    assert small.points[0].ttft_ms == RESULT.points[0].ttft_ms  # the figures stay as measured
    assert "request samples per load point" in small.warnings[-1]
    with pytest.raises(SummaryError, match="does not fit"):
        compact(RESULT, limit=100)


def test_the_summary_file(tmp_path: Path) -> None:
    write_file(RESULT, tmp_path / "a" / "summary.json")
    assert RunResult.model_validate_json((tmp_path / "a" / "summary.json").read_text()).variant == "dense-int4"
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(SummaryError, match="cannot write the summary"):
        write_file(RESULT, tmp_path / "blocked" / "summary.json")


@pytest.mark.parametrize(
    ("name", "labels", "owner", "error"),
    [
        ("ns/", [], None, "give NAME or NAMESPACE/NAME"),
        ("x", ["novalue"], None, "--summary-label 'novalue': write KEY=VALUE"),
        ("x", [], "kind=BakeOff,name=bo", "missing apiVersion, uid"),
        ("x", [], "apiVersion=v1,kind=K,name=n,uid=u,extra=1", "unknown extra"),
    ],
    ids=["no-name", "label", "owner-missing", "owner-unknown"],
)
def test_bad_summary_flags_name_the_flag(name: str, labels: list[str], owner: str | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_target(name, labels, owner)


def test_kubeconfig_credentials(tmp_path: Path) -> None:
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority": "/ca"}}],
        "users": [{"name": "u", "user": {"token": "t0k"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    assert kubeconfig_credentials(path) == Credentials(
        server="https://127.0.0.1:6443", token="t0k", ca_file="/ca", namespace="team"
    )
    config["users"] = [{"name": "u", "user": {"client-certificate": "/cert"}}]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SummaryError, match="has no token"):
        kubeconfig_credentials(path)


class _ApiServer(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[int] = 201

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        payload = json.dumps({"message": "configmaps exists"} if self.answer >= 300 else body).encode()
        self.send_response(self.answer)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    _ApiServer.seen = []
    _ApiServer.answer = 201
    server = HTTPServer(("127.0.0.1", 0), _ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_summary_configmap_is_created_with_the_token(api_server: str) -> None:
    creds = Credentials(server=api_server, token="t0k", namespace="default", insecure=True)
    owner = "apiVersion=bakeoff.dev/v1alpha1,kind=BakeOff,name=bo,uid=u1"
    target = parse_target("team/bo-run-a", ["bakeoff.dev/run=bo-run", "bakeoff.dev/variant=a"], owner)
    assert write_configmap(RESULT, target, creds) == "team/bo-run-a"
    [request] = _ApiServer.seen
    assert (request["path"], request["auth"]) == ("/api/v1/namespaces/team/configmaps", "Bearer t0k")
    meta = request["body"]["metadata"]
    assert meta["labels"] == {"bakeoff.dev/run": "bo-run", "bakeoff.dev/variant": "a"}
    assert meta["ownerReferences"] == [{"apiVersion": "bakeoff.dev/v1alpha1", "kind": "BakeOff", "name": "bo",
                                        "uid": "u1"}]  # fmt: skip
    assert RunResult.model_validate_json(request["body"]["data"][SUMMARY_KEY]).variant == "dense-int4"
    _ApiServer.answer = 409
    with pytest.raises(SummaryError, match=r"refused \(409\): configmaps exists"):
        write_configmap(RESULT, target, creds)
