"""The bounded read-only command runner behind the text reads (no root needed)."""

from __future__ import annotations

import pytest

from exporter.firewall.commands import CommandError, read_command


def test_output() -> None:
    assert read_command(["echo", "hi"], 5) == "hi\n"


def test_stdin_is_closed() -> None:
    assert read_command(["cat"], 5) == ""


def test_missing_tool_names_the_package() -> None:
    with pytest.raises(CommandError, match=r"^iptables-nope-save not found: install the iptables"):
        read_command(["iptables-nope-save", "-c"], 5)


def test_missing_nft_names_nftables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CommandError, match=r"^nft not found: install the nftables package"):
        read_command(["nft", "-s", "list", "ruleset"], 5)


def test_timeout() -> None:
    with pytest.raises(CommandError, match=r"^sleep 5 timed out after 0\.2s$"):
        read_command(["sleep", "5"], 0.2)


def test_failure_carries_the_last_stderr_line() -> None:
    with pytest.raises(CommandError, match=r"failed \(exit 3\): oops$"):
        read_command(["sh", "-c", "echo first >&2; echo oops >&2; exit 3"], 5)
    # what grants the refused read is named (per tool: tests/test_firewall_errors.py)
    with pytest.raises(CommandError, match=r"\(you must be root\) \(needs CAP_NET_ADMIN\)$"):
        read_command(["sh", "-c", "echo 'Permission denied (you must be root)' >&2; exit 4"], 5)
