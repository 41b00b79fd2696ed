"""What a ruleset's text said, kept until the ruleset changes, and the chains built from it.

A :class:`ChainPlan` is one exported chain's structure as its text gave it
(rule texts, policy, hook) and where its rules sit in the raw reads (rule
handles for nf_tables, entry indexes for iptables-legacy). On polls of an
unchanged ruleset only counters are read; :class:`ChainCache` turns them into
model :class:`~exporter.model.Chain` objects, handing back the previous poll's
object when nothing changed, and keeps ``FirewallData.structure``: a token
that changes exactly when the structure does.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.model import Chain, Rules, Table

STRUCTURE_ATTEMPTS = 3  # text reads of a ruleset that keeps changing, before giving up
RETRY_AFTER = 60.0  # seconds before a failed text read (missing tool, timeout) is retried


class Restructure(Exception):
    """The raw read does not line up with the known structure: re-read the text."""


class Unsettled(Exception):
    """The ruleset kept changing while its text was read; the next poll tries again."""


@dataclass(slots=True)
class ChainPlan:
    name: str
    texts: tuple[str, ...]
    builtin: bool
    policy: str | None
    hook: str | None = None
    handles: tuple[int, ...] = ()  # nf_tables: rule handles in order
    first: int = 0  # legacy: index of its first rule entry
    policy_entry: int | None = None  # legacy: index of the underflow entry
    span: tuple[int, int] = (0, 0)  # nf_tables whole-table dump: its rules' slice
    counted: bool = True  # False: text only (selection.TEXT_ONLY), its rules' counters None

    def no_counters(self) -> tuple[tuple[None, ...], tuple[None, ...]]:
        """The packets and bytes columns of a chain read for its text only (the same
        objects every poll: thousands of such chains on a node)."""
        none = _nones(len(self.texts))
        return none, none


@functools.lru_cache(maxsize=256)
def _nones(n: int) -> tuple[None, ...]:
    return (None,) * n


# (plan, raw counters snapshot, the Chain built from them, indexes of its rules without
# counters)
_CachedChain = tuple[ChainPlan, object, Chain, tuple[int, ...]]
_STRUCTURE_TOKENS = itertools.count(1)  # FirewallData.structure, unique in the process


class ChainCache:
    """Model chains by (backend, family, table, chain), reused from one poll to the next.

    A poll calls :meth:`begin`, then :meth:`chain` for every chain it exports,
    then :meth:`end`; chains not built in a poll are forgotten.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], _CachedChain] = {}
        self._new: dict[tuple[str, ...], _CachedChain] = {}
        # FirewallData.structure: what it stands for, and the token
        self._shape: tuple[object, ...] = ()
        self._structure = 0

    def begin(self) -> None:
        self._new = {}

    def end(self) -> None:
        self._cache = self._new

    def chain(
        self,
        key: tuple[str, ...],
        plan: ChainPlan,
        snapshot: object,
        counters: tuple[Sequence[int | None], Sequence[int | None]],
        policy_counters: tuple[int | None, int | None],
    ) -> Chain:
        """The model Chain from its rules' counters (packets and bytes columns); the previous
        poll's object when nothing changed.

        ``snapshot`` holds the raw counters; the chain is reused only under the
        same plan (the same text), so a changed rule never keeps an old text.
        Otherwise its rules are a :class:`~exporter.model.Rules` over the plan's
        texts and these columns: no Rule object is made until one is read.
        """
        prev = self._cache.get(key)
        if prev is not None and prev[0] is plan and prev[1] == snapshot:
            self._new[key] = prev
            return prev[2]
        texts = plan.texts
        packets, nbytes = counters
        if len(packets) != len(texts) or len(nbytes) != len(texts):
            raise ValueError(f"chain {plan.name}: {len(texts)} rules but {len(packets)} counters")
        none_at: tuple[int, ...] = ()
        if None in packets or None in nbytes:
            none_at = tuple(
                i for i, (p, b) in enumerate(zip(packets, nbytes, strict=True)) if None in (p, b)
            )
        chain = Chain(
            name=plan.name,
            rules=Rules(texts, packets, nbytes),
            policy=plan.policy,
            policy_packets=policy_counters[0],
            policy_bytes=policy_counters[1],
            hook=plan.hook,
            counters=counters,
        )
        self._new[key] = (plan, snapshot, chain, none_at)
        return chain

    def structure_of(self, tables: list[Table]) -> int:
        """The token for these tables (``FirewallData.structure``), built this poll.

        A new one whenever a table or chain came or went, a chain's plan (rule
        texts, policy, hook) was replaced by an unequal one, or which of its
        rules lack counters changed.
        """
        shape: list[object] = []
        for t in tables:
            shape.append((t.family, t.backend, t.name))
            for c in t.chains:
                entry = self._new[(t.backend, t.family, t.name, c.name)]
                shape.append((entry[0], entry[3]))
        shape_t = tuple(shape)
        if shape_t != self._shape:
            self._shape = shape_t
            self._structure = next(_STRUCTURE_TOKENS)
        return self._structure
