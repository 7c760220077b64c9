"""The Globus adapter against recorded responses of the documented Transfer API (v0.10), served
over real HTTP by a tiny local server: submit, a SUCCEEDED task, a FAILED task, an ACTIVE task
with faults, an unknown task, Globus unreachable; and a transfer worker copying through it.

The bodies follow Globus's documented task, event and transfer-result documents (the task
document's fields as in globus-sdk's own recorded ``task_list`` response)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from portal.data import catalog, globus, rules, sites, transfer
from portal.db.engine import connect_raw
from portal.errors import BackendUnavailable, PortalError
from portal.settings import Settings
from tests.conftest import free_port
from tests.data_fixtures import make_files, product_records, rows, tag, with_data

TOKEN = "recorded-access-token"
SOURCE = "b6f0a5b4-3e4b-4c9d-9a41-2a8f0c5e0001"
DEST = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d0002"
SUBMISSION_ID = "a7e7b4e8-5b5a-11ef-9f5e-0242ac110002"
TASKS = {
    "SUCCEEDED": "42bb7fd6-5b5a-11ef-9f5e-0242ac110002",
    "FAILED": "52bb7fd6-5b5a-11ef-9f5e-0242ac110002",
    "ACTIVE": "62bb7fd6-5b5a-11ef-9f5e-0242ac110002",
}


def task_document(task_id: str, status: str, **changes: Any) -> dict[str, Any]:
    """A task document as ``GET /v0.10/task/<id>`` returns it."""
    doc = {
        "DATA_TYPE": "task",
        "bytes_checksummed": 0,
        "bytes_transferred": 4,
        "canceled_by_admin": None,
        "canceled_by_admin_message": None,
        "command": "API 0.10",
        "completion_time": "2026-11-30T18:04:49+00:00",
        "deadline": "2026-12-01T18:04:47+00:00",
        "delete_destination_extra": False,
        "destination_endpoint": "computecanada#archive",
        "destination_endpoint_display_name": "Compute Canada archive",
        "destination_endpoint_id": DEST,
        "directories": 0,
        "effective_bytes_per_second": 3,
        "encrypt_data": False,
        "fail_on_quota_errors": False,
        "fatal_error": None,
        "faults": 0,
        "files": 1,
        "files_skipped": 0,
        "files_transferred": 1,
        "filter_rules": None,
        "history_deleted": False,
        "is_ok": None,
        "is_paused": False,
        "label": "obsportal",
        "nice_status": None,
        "nice_status_details": None,
        "nice_status_expires_in": None,
        "nice_status_short_description": None,
        "owner_id": "8ba9c52e-5b5a-11ef-9f5e-0242ac110002",
        "preserve_timestamp": True,
        "recursive_symlinks": "ignore",
        "request_time": "2026-11-30T18:04:47+00:00",
        "skip_source_errors": False,
        "source_endpoint": "telescope#pipeline",
        "source_endpoint_display_name": "Telescope pipeline",
        "source_endpoint_id": SOURCE,
        "status": status,
        "subtasks_canceled": 0,
        "subtasks_expired": 0,
        "subtasks_failed": 0,
        "subtasks_pending": 0,
        "subtasks_retrying": 0,
        "subtasks_skipped_errors": 0,
        "subtasks_succeeded": 2,
        "subtasks_total": 2,
        "symlinks": 0,
        "sync_level": 3,
        "task_id": task_id,
        "type": "TRANSFER",
        "username": "u_obsportal",
        "verify_checksum": True,
    }
    doc.update(changes)
    return doc


def event(code: str, description: str, is_error: bool, details: str) -> dict[str, Any]:
    return {
        "DATA_TYPE": "event",
        "code": code,
        "description": description,
        "details": details,
        "is_error": is_error,
        "time": "2026-11-30T18:05:02+00:00",
    }


RECORDED: dict[str, dict[str, Any]] = {
    "/v0.10/submission_id": {"DATA_TYPE": "submission_id", "value": SUBMISSION_ID},
    f"/v0.10/task/{TASKS['SUCCEEDED']}": task_document(
        TASKS["SUCCEEDED"], "SUCCEEDED", bytes_transferred=3000, files=2, files_transferred=2
    ),
    f"/v0.10/task/{TASKS['FAILED']}": task_document(
        TASKS["FAILED"],
        "FAILED",
        files_transferred=0,
        bytes_transferred=0,
        faults=1,
        subtasks_failed=1,
        fatal_error={"code": "FILE_NOT_FOUND", "description": "No such file or directory"},
    ),
    f"/v0.10/task/{TASKS['ACTIVE']}": task_document(
        TASKS["ACTIVE"],
        "ACTIVE",
        completion_time=None,
        bytes_transferred=1024,
        files_transferred=0,
        faults=3,
        nice_status="PERMISSION_DENIED",
        nice_status_short_description="Permission denied",
        subtasks_retrying=1,
    ),
    f"/v0.10/task/{TASKS['ACTIVE']}/event_list": {
        "DATA_TYPE": "event_list",
        "DATA": [
            event(
                "PERMISSION_DENIED",
                "permission denied",
                True,
                "Error (transfer)\\nServer: dtn1.computecanada.example:2811\\n"
                "Command: STOR /archive/hhat_monthly/x.h5\\n550 Permission denied",
            ),
            event("STARTED", "started", False, "Task started"),
        ],
        "limit": 10,
        "offset": 0,
        "total": 2,
    },
    f"/v0.10/task/{TASKS['FAILED']}/event_list": {
        "DATA_TYPE": "event_list",
        "DATA": [
            event("FILE_NOT_FOUND", "file not found", True, "No such file or directory"),
        ],
        "limit": 10,
        "offset": 0,
        "total": 1,
    },
}


class Recorded(BaseHTTPRequestHandler):
    """Answers with the recorded documents; remembers what it was sent."""

    server: Any

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._answer(
            401,
            {
                "code": "AuthenticationFailed",
                "message": "Token is not active",
                "request_id": "Xq0xMOJzN",
                "resource": self.path,
            },
        )
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        if path in RECORDED:
            self._answer(200, RECORDED[path])
        else:
            self._answer(
                404,
                {
                    "code": "ClientError.NotFound",
                    "message": f"Task {path.rsplit('/', 1)[-1]} not found",
                    "request_id": "iKGpsoUDn",
                    "resource": path,
                },
            )

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.submitted.append(body)
        task_id = TASKS[self.server.outcome]
        self._answer(
            202,
            {
                "DATA_TYPE": "transfer_result",
                "code": "Accepted",
                "message": "The transfer has been accepted and a task has been created and "
                "queued for execution",
                "request_id": "7HgMVYazI",
                "resource": "/v0.10/transfer",
                "submission_id": body.get("submission_id", SUBMISSION_ID),
                "task_id": task_id,
                "task_link": {
                    "DATA_TYPE": "link",
                    "href": f"/v0.10/task/{task_id}?format=json",
                    "rel": "related",
                    "resource": "task",
                    "title": "related task",
                },
            },
        )


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    server.seen, server.submitted, server.outcome = [], [], "SUCCEEDED"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def adapter(api: Any, token: str = TOKEN) -> globus.Globus:
    return globus.Globus(SOURCE, DEST, token, base_url=api.url, max_retries=0)


def test_submit_sends_a_checksum_verified_transfer_with_the_bearer_token(api: Any) -> None:
    api.outcome = "SUCCEEDED"
    task = adapter(api).submit(
        [("/data/a.h5", "/archive/a.h5"), ("/data/b.h5", "/archive/b.h5")], "obsportal hhat"
    )
    assert task == TASKS["SUCCEEDED"]
    body = api.submitted[-1]
    assert body["DATA_TYPE"] == "transfer" and body["submission_id"] == SUBMISSION_ID
    assert body["source_endpoint"] == SOURCE and body["destination_endpoint"] == DEST
    assert body["verify_checksum"] is True and body["sync_level"] == 3
    assert [(i["source_path"], i["destination_path"]) for i in body["DATA"]] == [
        ("/data/a.h5", "/archive/a.h5"),
        ("/data/b.h5", "/archive/b.h5"),
    ]
    assert all(auth == f"Bearer {TOKEN}" for _m, _p, auth in api.seen)


def test_succeeded_failed_and_faulty_tasks(api: Any) -> None:
    client = adapter(api)
    ok = client.status(TASKS["SUCCEEDED"])
    assert ok.finished and ok.status == "SUCCEEDED" and ok.bytes_transferred == 3000
    assert ok.files_transferred == 2 and ok.errors == [] and ok.problem() == ""
    assert not any(p.endswith(f"{TASKS['SUCCEEDED']}/event_list") for _m, p, _a in api.seen)

    failed = client.status(TASKS["FAILED"])
    assert failed.finished and failed.status == "FAILED"
    assert failed.fatal_error == "FILE_NOT_FOUND: No such file or directory"
    assert failed.errors == ["FILE_NOT_FOUND: file not found"]

    faulty = client.status(TASKS["ACTIVE"])
    assert not faulty.finished and faulty.faults == 3 and faulty.bytes_transferred == 1024
    assert faulty.errors == ["PERMISSION_DENIED: permission denied"]  # not the STARTED event
    assert faulty.problem() == "PERMISSION_DENIED: permission denied"


def test_errors_are_one_line(api: Any) -> None:
    with pytest.raises(PortalError, match=r"^Globus task: HTTP 404 ClientError.NotFound: Task"):
        adapter(api).status("00000000-0000-0000-0000-000000000000")
    with pytest.raises(PortalError, match="HTTP 401 AuthenticationFailed: Token is not active"):
        adapter(api, token="expired").status(TASKS["SUCCEEDED"])
    dead = globus.Globus(SOURCE, DEST, TOKEN, f"http://127.0.0.1:{free_port()}/", max_retries=0)
    with pytest.raises(BackendUnavailable, match="^Globus task: "):
        dead.status(TASKS["SUCCEEDED"])


def test_worker_copies_through_globus_and_keeps_a_failed_task_queued(
    api: Any, cfg: Settings, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    t = tag()
    files = make_files(tmp_path / "src", 2, 1500)
    catalog.store_products(
        cfg.database_url, rows(product_records(files, "hhat_monthly", f"g-{t}", {"t": t}))
    )
    site = sites.Site(
        f"cc-globus-{t}",
        f"globus://{DEST}/archive",
        options={
            "source_collection": SOURCE,
            "token_file": str(token_file),
            "base_url": api.url,
            "max_retries": 0,
            "poll_seconds": 0.05,
        },
    )
    sites.save(cfg.database_url, site)
    rules.add(cfg.database_url, f"g-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    rules.evaluate(cfg)
    api.outcome = "FAILED"
    worker = transfer.Worker(with_data(cfg, retry_backoff=0.01))
    assert worker.run_once(site.name)
    with connect_raw(cfg.database_url) as conn:
        failed = conn.execute(
            "SELECT state, error_class, last_error FROM transfer_requests WHERE site = %s",
            (site.name,),
        ).fetchall()
    assert {r[0] for r in failed} == {"QUEUED"} and {r[1] for r in failed} == {"globus"}
    assert all("FAILED: FILE_NOT_FOUND: No such file or directory" in r[2] for r in failed)
    assert "/archive/g-" in json.dumps(api.submitted[-1]["DATA"])

    api.outcome = "SUCCEEDED"
    while worker.run_once(site.name):
        pass
    with connect_raw(cfg.database_url) as conn:
        got = conn.execute(
            "SELECT r.state, r.checksum = p.checksum FROM replicas r JOIN data_products p "
            "ON p.id = r.product_id WHERE r.site = %s",
            (site.name,),
        ).fetchall()
    assert got == [("AVAILABLE", True), ("AVAILABLE", True)]
