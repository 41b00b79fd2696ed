"""Running the read-only firewall tools, and saying why a read was refused.

The text of a ruleset comes from ``iptables-{nft,legacy}-save -c`` and ``nft
-s -a list table``; :func:`read_command` runs them bounded, in the C locale,
and turns every way they can fail into a :class:`CommandError` that says
why. :func:`permission_hint` and :func:`os_error_message` name what grants a
refused read (a capability, a file's mode).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Sequence

from exporter.netlink import netfilter as nfnetlink
from exporter.netlink import xtables

_PACKAGE = {"nft": "nftables"}

Runner = Callable[[Sequence[str], float], str]


class CommandError(Exception):
    """An external read command could not be run or failed; the message says why."""


def read_command(argv: Sequence[str], timeout: float) -> str:
    """Run a read-only command (stdin closed, C locale, bounded); its stdout."""
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except FileNotFoundError:
        pkg = _PACKAGE.get(argv[0], "iptables")
        raise CommandError(f"{argv[0]} not found: install the {pkg} package") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv)} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise CommandError(f"{argv[0]} could not be run: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = err[-1] if err else "no error output"
        detail += permission_hint(argv[0], detail)
        raise CommandError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail}")
    return proc.stdout.decode(errors="replace")


_REFUSED = ("Permission denied", "must be root", "Operation not permitted")


def permission_hint(tool: str, detail: str) -> str:
    """What grants a read tool what it was refused (its last stderr line ``detail``), or "".

    ``iptables-legacy-save`` reads /proc/net/ip(6)_tables_names (mode 0440
    root:root), then entries through a raw socket (CAP_NET_RAW) with
    getsockopt (CAP_NET_ADMIN); ``iptables-nft-save`` and ``nft`` talk
    nf_tables netlink (CAP_NET_ADMIN).
    """
    if not any(word in detail for word in _REFUSED):
        return ""
    if "_tables_names" in detail:
        return f" ({xtables.NAMES_FILE_ACCESS})"
    if "legacy" in os.path.basename(tool):
        return " (needs CAP_NET_RAW and CAP_NET_ADMIN)"
    return f" ({xtables.NEEDS_NET_ADMIN})"


def os_error_message(backend: str, exc: OSError, step: str = "", grant: str = "") -> str:
    """``BACKEND (STEP): REASON (WHAT GRANTS IT)`` for a failed raw read.

    :class:`~exporter.netlink.xtables.XtError` carries its own step and grant, a
    :class:`~exporter.netlink.netfilter.NetlinkError` its request; ``step`` and
    ``grant`` stand in for the rest. The grant is named only when the kernel
    refused (EACCES, EPERM).
    """
    if isinstance(exc, xtables.XtError):
        step, grant = exc.step, exc.grant
    elif isinstance(exc, nfnetlink.NetlinkError) and exc.request:
        step = f"netlink {exc.request}"
    refused = exc.errno in (errno.EPERM, errno.EACCES)
    reason = "permission denied" if refused else (exc.strerror or str(exc))
    head = f"{backend} ({step})" if step else backend
    return f"{head}: {reason}" + (f" ({grant})" if refused and grant else "")
