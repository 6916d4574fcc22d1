"""Block every network connection that leaves this machine, in the test process and (through
sitecustomize) in every Python subprocess the tests start. Attempts are logged to the file named
by MODELPORT_TEST_NET_LOG so the test that caused one fails."""

from __future__ import annotations

import ipaddress
import os
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(OSError):
    pass


def _is_local(host: object) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    log = os.environ.get("MODELPORT_TEST_NET_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {what}\n")


def _check(address: object) -> None:
    if isinstance(address, tuple) and not _is_local(address[0]):
        _record(f"connect {address!r}")
        raise NetworkBlocked(f"network access blocked by the test suite: {address!r}")


def _connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        _record(f"resolve {host!r}")
        raise NetworkBlocked(f"name resolution blocked by the test suite: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo
