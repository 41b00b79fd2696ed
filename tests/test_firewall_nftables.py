"""Pure tests of the nf_tables backend's policy counters (exporter/firewall/nftables.py).

On a captured GETCHAIN dump beside ``iptables-nft-save -c`` of the same moment.
"""

from __future__ import annotations

from pathlib import Path

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nftables import policy_counters
from exporter.model import BACKEND_IPTABLES_NFT, BACKEND_NFTABLES
from exporter.netlink import netfilter as nl

FIX = Path(__file__).parent / "fixtures" / "firewall"


def _bin(name: str) -> bytes:
    return (FIX / name).read_bytes()


def test_chains_made_on_first_use_have_no_kernel_policy_counters() -> None:
    """Docker's way on iptables-nft (``-A`` makes the nat base chains, ``-P`` FORWARD).

    The kernel keeps no policy counters for the chains made by ``-A``, the
    tool prints ``[0:0]`` for them; :func:`policy_counters` says what the tool says.
    """
    out: list[nl.NftChainInfo] = []
    assert nl.parse_chain_messages(_bin("nft-chains-docker-way.bin"), out, 3)
    chains = {(c.table, c.name): c for c in out}
    text = (FIX / "iptables-nft-save-c-docker-way.txt").read_text()
    saved = parse_iptables_save(text, "ipv4", BACKEND_IPTABLES_NFT)
    got, want = {}, {}
    for table in saved:
        for c in table.chains:
            info = chains.get((table.name, c.name))
            if c.policy is not None and info is not None:
                got[(table.name, c.name)] = policy_counters(BACKEND_IPTABLES_NFT, info)
                want[(table.name, c.name)] = (c.policy_packets, c.policy_bytes)
    assert got == want
    assert sorted(got) == [
        ("filter", "FORWARD"),
        ("nat", "OUTPUT"),
        ("nat", "POSTROUTING"),
        ("nat", "PREROUTING"),
    ]
    assert chains[("filter", "FORWARD")].packets == 0
    assert [chains[("nat", n)].packets for n in ("PREROUTING", "OUTPUT", "POSTROUTING")] == [
        None
    ] * 3
    assert ("nat", "INPUT") not in chains
    # a native nftables base chain without them has no policy counter at all
    assert policy_counters(BACKEND_NFTABLES, chains[("nat", "OUTPUT")]) == (None, None)
