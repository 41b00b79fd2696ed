"""The nf_tables backends (iptables-nft, nftables): text on a generation change, else counters.

Rule *text* (the series' identity) is read only when the ruleset's
``NFT_MSG_GETGEN`` generation moved (:mod:`exporter.firewall.nft_structure`),
between two generation reads so it is known to be consistent. On every other
poll the counters come from one GETRULE dump per exported table (or chain),
mapped to the text by rule handle, and the base chains' policy counters from
one batch of GETCHAIN requests. When a dump does not line up the text is
re-read: a counter is never exported under the wrong rule.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Sequence

from exporter.firewall.commands import CommandError, Runner, os_error_message
from exporter.firewall.nft_structure import (
    NftState,
    StructureReads,
    read_structure,
)
from exporter.firewall.plans import (
    RETRY_AFTER,
    STRUCTURE_ATTEMPTS,
    ChainCache,
    Restructure,
    Unsettled,
)
from exporter.firewall.selection import Select
from exporter.model import BACKEND_IPTABLES_NFT, Chain, Table
from exporter.netlink import xtables
from exporter.netlink.netfilter import NftChainInfo, NftReader


def policy_counters(backend: str, info: NftChainInfo) -> tuple[int | None, int | None]:
    """A base chain's policy counters from its GETCHAIN reply, as its backend's listing shows them.

    The kernel keeps them only for a base chain created or updated with
    NFTA_CHAIN_COUNTERS. iptables-nft makes a built-in chain without them when
    its first rule arrives (Docker's nat PREROUTING, OUTPUT, POSTROUTING) and
    with them on ``-P`` or ``iptables-nft-restore``; without them the kernel
    does not count the policy and ``iptables-nft-save -c`` prints ``[0:0]``,
    which is what the text read exports, so here too: (0, 0). A native
    nftables base chain without them has no policy counter: (None, None).
    """
    if info.packets is not None and info.bytes is not None:
        return info.packets, info.bytes
    if backend == BACKEND_IPTABLES_NFT:
        return 0, 0
    return None, None


class NftBackend:
    """Reads the nf_tables tables of every family (see module doc)."""

    def __init__(
        self,
        runner: Runner,
        timeout: float,
        select: Select,
        cache: ChainCache,
        text_reads: dict[str, int],
    ) -> None:
        self._reader = NftReader()
        self._reads = StructureReads(self._reader, runner, timeout, select, cache)
        self._cache = cache
        self._text_reads = text_reads
        self._state: NftState | None = None

    def close(self) -> None:
        self._reader.close()

    def collect(self, errors: list[str], holds: set[tuple[str, str]]) -> list[Table]:
        """The exported tables; failures appended to ``errors``, holding backends to ``holds``.

        No nf_tables in the kernel (EPROTONOSUPPORT, EAFNOSUPPORT) is no error.
        """
        try:
            tables, nft_holds, nft_errors = self._collect()
        except OSError as exc:
            self._reader.close()
            self._state = None
            if exc.errno not in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
                errors.append(
                    os_error_message("nf_tables", exc, "netlink", xtables.NEEDS_NET_ADMIN)
                )
            return []
        except (CommandError, ValueError, Unsettled) as exc:
            self._state = None
            errors.append(f"nf_tables: {exc}")
            return []
        holds |= nft_holds
        errors.extend(nft_errors)
        return tables

    def _collect(self) -> tuple[list[Table], set[tuple[str, str]], list[str]]:
        state = self._state
        gen = self._reader.generation()
        # After a failed text read (missing tool, timeout) the tables that did
        # read keep their counters; the text is retried after a back-off.
        if (
            state is not None
            and state.gen == gen
            and (not state.errors or time.monotonic() < state.retry_at)
        ):
            try:
                return self._counters(state), state.holds, list(state.errors)
            except Restructure:
                pass
        tables, state = self._structure()
        if state.errors:
            state.retry_at = time.monotonic() + RETRY_AFTER
        self._state = state
        return tables, state.holds, list(state.errors)

    def _counters(self, state: NftState) -> list[Table]:
        """Counters of an unchanged nf_tables ruleset: GETRULE dumps mapped by handle."""
        policies = self._reader.chain_infos(state.base_keys)
        pol: dict[tuple[int, str, str], NftChainInfo] = {}
        for info in policies:
            if info is None:
                raise Restructure()
            pol[(info.family, info.table, info.name)] = info
        out: list[Table] = []
        for plan in state.plans:
            chains: list[Chain] = []
            per_chain: list[tuple[Sequence[int | None], Sequence[int | None]]] = []
            if plan.whole:
                cols = self._reader.counters(plan.family, plan.name)
                if cols.handles != plan.flat_handles:
                    raise Restructure()
                for c in plan.chains:
                    a, b = c.span
                    counted = (cols.packets[a:b], cols.bytes[a:b])
                    per_chain.append(counted if c.counted else c.no_counters())
            else:
                for c in plan.chains:
                    if not c.counted:  # text only: its structure stands with the generation
                        per_chain.append(c.no_counters())
                        continue
                    cols = self._reader.counters(plan.family, plan.name, c.name)
                    if cols.handles != c.handles:
                        raise Restructure()
                    per_chain.append((cols.packets, cols.bytes))
            for c, (pks, bys) in zip(plan.chains, per_chain, strict=True):
                info = pol.get((plan.family, plan.name, c.name)) if c.builtin else None
                pc = policy_counters(plan.backend, info) if info is not None else (None, None)
                key = (plan.backend, plan.label, plan.name, c.name)
                chains.append(self._cache.chain(key, c, (pks, bys, pc), (pks, bys), pc))
            out.append(Table(plan.label, plan.backend, plan.name, tuple(chains)))
        return out

    def _structure(self) -> tuple[list[Table], NftState]:
        """Read tables, chains, rule text and handles inside one unchanged generation."""
        for _ in range(STRUCTURE_ATTEMPTS):
            gen = self._reader.generation()
            try:
                result = read_structure(self._reads, gen)
            except ValueError:
                if self._reader.generation() == gen:
                    raise  # not a race: the text really does not match the kernel
                continue
            if self._reader.generation() == gen:
                self._text_reads["nf_tables"] += 1
                return result
        raise Unsettled("the nf_tables ruleset kept changing while it was read")
