"""The Globus adapter: the production path to a national compute centre (e.g. Compute Canada).

The one module that talks to Globus Transfer (through ``globus-sdk``): submit a transfer of
several files with checksum verification at the destination (``verify_checksum``, sync level
``checksum``), then poll the task: status, bytes transferred, faults and their events.

A site ``globus://<destination collection id>/<root>`` with options ``source_collection`` (the
collection where the pipeline writes) and ``token_file`` (a Globus Transfer access token,
mode 0600) is copied to by the transfer workers through this adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal.errors import BackendUnavailable, PortalError

DONE_STATES = ("SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class TaskStatus:
    """What the portal keeps of a Globus task document (and its error events)."""

    task_id: str
    status: str  # ACTIVE | INACTIVE | SUCCEEDED | FAILED
    bytes_transferred: int
    files: int
    files_transferred: int
    faults: int
    nice_status: str | None
    fatal_error: str | None
    errors: list[str] = field(default_factory=list)  # "CODE: description" of error events

    @property
    def finished(self) -> bool:
        return self.status in DONE_STATES

    def problem(self) -> str:
        """One line saying what went wrong (empty when nothing did)."""
        if self.fatal_error:
            return self.fatal_error
        if self.errors:
            return self.errors[0]
        if self.nice_status and self.nice_status not in ("OK", "Queued"):
            return self.nice_status
        return ""


class Globus:
    """A Transfer client for one pair of collections."""

    def __init__(
        self,
        source_collection: str,
        destination_collection: str,
        token: str,
        base_url: str | None = None,
        max_retries: int = 5,
    ) -> None:
        import globus_sdk
        from globus_sdk.transport import RetryConfig

        self.source, self.destination = source_collection, destination_collection
        self.client = globus_sdk.TransferClient(
            authorizer=globus_sdk.AccessTokenAuthorizer(token),
            base_url=base_url,
            app_name="obsportal",
            retry_config=RetryConfig(max_retries=max_retries, max_sleep=10),
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One clear line for every Globus failure: the API's code and message, or the network."""
        import globus_sdk

        try:
            return fn(*args, **kwargs)
        except globus_sdk.GlobusAPIError as exc:
            raise PortalError(
                f"Globus {what}: HTTP {exc.http_status} {exc.code}: {exc.message}"
            ) from None
        except globus_sdk.NetworkError as exc:
            raise BackendUnavailable(f"Globus {what}: {str(exc).splitlines()[0]}") from None

    def submit(self, items: Sequence[tuple[str, str]], label: str) -> str:
        """Submit (source path, destination path) pairs; returns the task id."""
        import globus_sdk

        if not items:
            raise PortalError("Globus submit: nothing to transfer")
        data = globus_sdk.TransferData(
            self.source,
            self.destination,
            label=label[:128],
            sync_level="checksum",
            verify_checksum=True,
            preserve_timestamp=True,
            notify_on_succeeded=False,
            notify_on_failed=False,
            notify_on_inactive=False,
        )
        for source, dest in items:
            data.add_item(source, dest)
        result = self._call("submit", self.client.submit_transfer, data)
        return str(result["task_id"])

    def status(self, task_id: str, events: int = 10) -> TaskStatus:
        """The task's state; with faults or a failure, its latest error events too."""
        doc = self._call("task", self.client.get_task, task_id)
        fatal = doc.get("fatal_error") or None
        status = TaskStatus(
            task_id=str(doc["task_id"]),
            status=str(doc["status"]),
            bytes_transferred=int(doc.get("bytes_transferred") or 0),
            files=int(doc.get("files") or 0),
            files_transferred=int(doc.get("files_transferred") or 0),
            faults=int(doc.get("faults") or 0),
            nice_status=doc.get("nice_status"),
            fatal_error=f"{fatal.get('code')}: {fatal.get('description')}" if fatal else None,
        )
        if status.faults or status.status == "FAILED":
            listed = self._call("events", self.client.task_event_list, task_id, limit=events)
            errors = [
                f"{e.get('code')}: {e.get('description')}" for e in listed if e.get("is_error")
            ]
            status = TaskStatus(**{**status.__dict__, "errors": errors})
        return status

    def cancel(self, task_id: str) -> None:
        self._call("cancel", self.client.cancel_task, task_id)


def for_site(url: str, options: dict[str, Any]) -> tuple[Globus, str]:
    """The adapter and destination root of a ``globus://COLLECTION/root`` site."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    token_file = options.get("token_file")
    if not parts.hostname or not options.get("source_collection") or not token_file:
        raise PortalError(
            f"Globus site {url!r} needs globus://COLLECTION/root and the options "
            "source_collection and token_file"
        )
    try:
        token = Path(str(token_file)).read_text().strip()
    except OSError as exc:
        raise PortalError(f"Globus token file {token_file}: {exc.strerror}") from None
    adapter = Globus(
        str(options["source_collection"]),
        parts.hostname,
        token,
        options.get("base_url"),  # another Transfer API endpoint (e.g. a test double)
        int(options.get("max_retries", 5)),
    )
    return adapter, parts.path or "/"
