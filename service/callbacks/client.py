"""The HTTP client that posts callbacks: keep-alive pools pinned to checked addresses."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import certifi
import urllib3

from service.callbacks.urls import Target
from service.settings import Settings

USER_AGENT = "commentguard-callbacks/1"


class CallbackClient:
    """Keep-alive connections for callbacks, one pool per checked target.

    A pinned target's pool connects to the checked address and sends the host name as the Host
    header, in SNI and for the certificate; an allowlisted one's connects to its host. Nothing
    is retried here (the delivery's schedule does that) and redirects are not followed: a
    redirect could lead to an address that was never checked. urllib3 rather than httpx: the
    worker sends a callback for every comment, and httpx's layers per request cost several
    times urllib3's (docs/benchmarks.md).
    """

    def __init__(self, timeout: float, connections: int = 16) -> None:
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.connections = connections
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to a checked target; its status code (urllib3's errors raised)."""
        parts = urlsplit(target.url)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        response = self._pool(parts.scheme, target).urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": host_header, "User-Agent": USER_AGENT},
            redirect=False,
            retries=False,
            assert_same_host=False,
            timeout=self.timeout,
        )
        return int(response.status)

    def _pool(self, scheme: str, target: Target) -> urllib3.HTTPConnectionPool:
        connect_to = target.address or target.host
        key = (scheme, connect_to, target.port, target.host)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        connect_to,
                        target.port,
                        maxsize=self.connections,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=certifi.where(),  # the bundle httpx verified against
                        assert_hostname=target.host,
                        server_hostname=target.host,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(
                        connect_to, target.port, maxsize=self.connections
                    )
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def send(client: CallbackClient, target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to a checked target, connecting to the checked address: its status code."""
    return client.post(target, body, headers)


def make_client(settings: Settings) -> CallbackClient:
    return CallbackClient(settings.callback_timeout_seconds, settings.callback_worker_threads)
