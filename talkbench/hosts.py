"""Which Host headers a local server answers: loopback names, the address it listens on, and names
given explicitly. Requests naming another host are refused (DNS rebinding: a page on evil.example
re-pointed at 127.0.0.1 still sends ``Host: evil.example``). Used by the study app and the viewer's server."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


def allowed_hosts(host: str = "127.0.0.1", extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a server answers to: loopback names, the address it listens on (unless a wildcard)
    and any names given explicitly."""
    names = {*LOOPBACK_NAMES, *extra}
    if host not in WILDCARDS:
        names.add(host)
    return frozenset(normal_host(n) for n in names)


def normal_host(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def host_of(header: str) -> str | None:
    """The host part of a Host header (port removed, IPv6 brackets removed), or None if malformed."""
    header = header.strip()
    if header.startswith("["):  # [v6] or [v6]:port
        name, closed, rest = header[1:].partition("]")
        port = rest.removeprefix(":")
        if not closed or (rest and (rest == port or not port.isdigit())):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, _, port = header.partition(":")
        if not name or (port and not port.isdigit()):
            return None
    return normal_host(name)
