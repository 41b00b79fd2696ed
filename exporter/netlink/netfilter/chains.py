"""Chains (NFT_MSG_GETCHAIN): hooks, priorities, policies and their counters."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from exporter.netlink import core
from exporter.netlink.core import NLM_F_REQUEST, Buffer
from exporter.netlink.netfilter.messages import (
    NFPROTO_ARP,
    NFPROTO_BRIDGE,
    NFPROTO_INET,
    NFPROTO_IPV4,
    NFPROTO_IPV6,
    NFPROTO_NETDEV,
    T_GETCHAIN,
    T_NEWCHAIN,
    be32,
    be64,
    build_request,
    encode_attr_str,
    text,
)
from exporter.netlink.netfilter.ruleset import parse_dump_messages

NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_HANDLE = 2
NFTA_CHAIN_NAME = 3
NFTA_CHAIN_HOOK = 4
NFTA_CHAIN_POLICY = 5
NFTA_CHAIN_USE = 6
NFTA_CHAIN_TYPE = 7
NFTA_CHAIN_COUNTERS = 8
NFTA_HOOK_HOOKNUM = 1
NFTA_HOOK_PRIORITY = 2
NFTA_HOOK_DEV = 3
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2

NF_DROP = 0
NF_ACCEPT = 1

# Hook numbers by family (linux/netfilter.h, netfilter_bridge.h, netfilter_arp.h)
_INET_HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress")
HOOK_NAMES: dict[int, tuple[str, ...]] = {
    NFPROTO_INET: _INET_HOOKS,
    NFPROTO_IPV4: _INET_HOOKS,
    NFPROTO_IPV6: _INET_HOOKS,
    NFPROTO_BRIDGE: _INET_HOOKS[:5],
    NFPROTO_NETDEV: ("ingress", "egress"),
    NFPROTO_ARP: ("input", "output", "forward"),
}

_BE32S = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class NftChainInfo:
    family: int
    table: str
    name: str
    handle: int
    hook: int | None  # base chains only (index into HOOK_NAMES[family])
    priority: int | None
    policy: int | None  # NF_ACCEPT / NF_DROP, base chains only
    type: str | None  # "filter", "nat", "route"; base chains only
    packets: int | None  # policy counters (NFTA_CHAIN_COUNTERS), when the chain has them
    bytes: int | None

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def hook_name(self) -> str | None:
        if self.hook is None:
            return None
        names = HOOK_NAMES.get(self.family, ())
        return names[self.hook] if self.hook < len(names) else str(self.hook)

    @property
    def policy_name(self) -> str | None:
        if self.policy is None:
            return None
        return {NF_ACCEPT: "accept", NF_DROP: "drop"}.get(self.policy, str(self.policy))


def build_getchain(seq: int, family: int, table: str, chain: str) -> bytes:
    attrs = encode_attr_str(NFTA_CHAIN_TABLE, table) + encode_attr_str(NFTA_CHAIN_NAME, chain)
    return build_request(T_GETCHAIN, NLM_F_REQUEST, seq, family, attrs)


def parse_counters(data: Buffer, start: int, end: int) -> tuple[int | None, int | None]:
    """Nested NFTA_COUNTER_* -> (packets, bytes)."""
    a = core.find_attrs(data, start, end)
    return be64(data, a.get(NFTA_COUNTER_PACKETS)), be64(data, a.get(NFTA_COUNTER_BYTES))


def parse_chain_message(data: Buffer, off: int, mlen: int) -> NftChainInfo:
    """One NEWCHAIN message at ``off``."""
    a = core.find_attrs(data, off + 20, off + mlen)
    hook = priority = None
    if (span := a.get(NFTA_CHAIN_HOOK)) is not None:
        h = core.find_attrs(data, span[0], span[0] + span[1])
        hook = be32(data, h.get(NFTA_HOOK_HOOKNUM))
        if (p := h.get(NFTA_HOOK_PRIORITY)) is not None and p[1] >= 4:
            priority = int(_BE32S.unpack_from(data, p[0])[0])
    packets = nbytes = None
    if (span := a.get(NFTA_CHAIN_COUNTERS)) is not None:
        packets, nbytes = parse_counters(data, span[0], span[0] + span[1])
    ctype = a.get(NFTA_CHAIN_TYPE)
    return NftChainInfo(
        family=data[off + 16],
        table=text(data, a.get(NFTA_CHAIN_TABLE)),
        name=text(data, a.get(NFTA_CHAIN_NAME)),
        handle=be64(data, a.get(NFTA_CHAIN_HANDLE)) or 0,
        hook=hook,
        priority=priority,
        policy=be32(data, a.get(NFTA_CHAIN_POLICY)) if hook is not None else None,
        type=text(data, ctype) if ctype is not None else None,
        packets=packets,
        bytes=nbytes,
    )


def parse_chain_messages(data: Buffer, out: list[NftChainInfo], seq: int | None = None) -> bool:
    """Append the chains of NEWCHAIN messages to ``out``; True once NLMSG_DONE was seen."""
    return parse_dump_messages(data, out, seq, T_NEWCHAIN, parse_chain_message)
