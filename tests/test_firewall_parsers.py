"""Pure tests of the iptables-save and nft text parsers, on captured tool output."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_rule_text, parse_nft_text
from exporter.model import BACKEND_IPTABLES_LEGACY, BACKEND_IPTABLES_NFT

FIX = Path(__file__).parent / "fixtures" / "firewall"


def _read(name: str) -> str:
    return (FIX / name).read_text()


# --------------------------------------------------------------------------
# iptables-save
# --------------------------------------------------------------------------


def test_seed_ruleset_tables_chains_and_rules() -> None:
    tables = parse_iptables_save(
        _read("seed-docker-classic.iptables-save"), "ipv4", BACKEND_IPTABLES_LEGACY
    )
    assert [t.name for t in tables] == ["filter", "nat"]
    flt, nat = tables
    assert (flt.family, flt.backend) == ("ipv4", BACKEND_IPTABLES_LEGACY)
    assert [c.name for c in flt.chains] == [
        "INPUT",
        "FORWARD",
        "OUTPUT",
        "DOCKER",
        "DOCKER-ISOLATION-STAGE-1",
        "DOCKER-ISOLATION-STAGE-2",
        "DOCKER-USER",
    ]
    chains = {c.name: c for c in flt.chains}
    assert chains["INPUT"].policy == "ACCEPT"
    assert (chains["INPUT"].policy_packets, chains["INPUT"].policy_bytes) == (
        244972180,
        39059491022,
    )
    assert chains["FORWARD"].policy == "DROP"
    assert chains["DOCKER"].policy is None
    assert len(chains["FORWARD"].rules) == 10
    stage2 = [r.text for r in chains["DOCKER-ISOLATION-STAGE-2"].rules]
    assert stage2 == ["-o br-40d652e0aac8 -j DROP", "-o docker0 -j DROP", "-j RETURN"]
    # plain "-A" lines (no -c) carry no counters
    assert all(r.packets is None and r.bytes is None for c in flt.chains for r in c.rules)
    dnat = {c.name: c for c in nat.chains}["DOCKER"].rules[-1]
    assert dnat.text == (
        "! -i br-40d652e0aac8 -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.18.0.2:80"
    )


def test_counters_from_save_c_output() -> None:
    tables = parse_iptables_save(_read("iptables-nft-save-c.txt"), "ipv4", BACKEND_IPTABLES_NFT)
    nat = {t.name: t for t in tables}["nat"]
    chains = {c.name: c for c in nat.chains}
    out = chains["OUTPUT"]
    assert (out.policy, out.policy_packets, out.policy_bytes) == ("ACCEPT", 1, 84)
    assert out.rules[0].text == "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"
    assert (out.rules[0].packets, out.rules[0].bytes) == (1, 84)
    assert chains["DOCKER"].rules[0].packets == 0


def test_ipv6_legacy_save() -> None:
    tables = parse_iptables_save(
        _read("xt-ipv6.ip6tables-legacy-save-c.txt"), "ipv6", BACKEND_IPTABLES_LEGACY
    )
    nat = {t.name: t for t in tables}["nat"]
    docker = {c.name: c for c in nat.chains}["DOCKER"]
    assert docker.rules[-1].text.endswith("-j DNAT --to-destination [fd00:18::2]:80")
    assert all(t.family == "ipv6" for t in tables)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-A FORWARD -j DROP\n", "line 1: "),
        (
            "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j DROP\n",
            "line 4: table 'filter' has no COMMIT",
        ),
        (
            "*filter\n:FORWARD DROP [0:0]\n[1:x] -A FORWARD -j DROP\nCOMMIT\n",
            "line 3: malformed counters",
        ),
        ("*filter\n-A NOPE -j DROP\nCOMMIT\n", "line 2: rule for undeclared chain 'NOPE'"),
        ("*filter\n:FORWARD MAYBE [0:0]\nCOMMIT\n", "line 2: unknown policy"),
        ("*filter\n:FORWARD\nCOMMIT\n", "line 2: malformed chain line"),
        ("*filter\n:X - [0:0]\n:X - [0:0]\nCOMMIT\n", "line 3: chain 'X' declared twice"),
        ("*filter\nCOMMIT\n*filter\nCOMMIT\n", "line 3: table 'filter' appears twice"),
        ("*filter\n*nat\nCOMMIT\n", "line 2: table 'nat' starts before COMMIT"),
        ("*filter\n:X - [0:0]\n-I X -j DROP\nCOMMIT\n", "line 3: expected a rule"),
        ("COMMIT\n", "line 1: "),
        ("*\n", "line 1: malformed table header"),
    ],
)
def test_malformed_input_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        parse_iptables_save(text, "ipv4", BACKEND_IPTABLES_NFT)


def test_rule_text_without_anything_after_chain() -> None:
    (table,) = parse_iptables_save("*filter\n:X - [0:0]\n[2:3] -A X\nCOMMIT\n", "ipv4", "b")
    assert table.chains[0].rules[0].text == ""
    assert table.chains[0].rules[0].packets == 2


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("*:-[]0123456789 AXCOMIT\n#fil")), max_size=120))
def test_fuzz_only_value_errors(text: str) -> None:
    try:
        parse_iptables_save(text, "ipv4", BACKEND_IPTABLES_NFT)
    except ValueError as exc:
        assert str(exc).startswith("line ")


# --------------------------------------------------------------------------
# nft
# --------------------------------------------------------------------------


def test_docker29_listing_with_s_and_a() -> None:
    (table,) = parse_nft_text(_read("docker29-bridges.nft-s-a.txt"))
    assert (table.family, table.name, table.handle) == ("ip", "docker-bridges", 1)
    chains = {c.name: c for c in table.chains}
    # maps are skipped, every chain is there, in listing order
    assert len(table.chains) == 14
    assert table.chains[0].name == "filter-forward-in__docker0"
    fwd = chains["filter-FORWARD"]
    assert (fwd.type, fwd.hook, fwd.priority, fwd.policy) == (
        "filter",
        "forward",
        "filter",
        "accept",
    )
    assert [(r.handle, r.text, r.has_counter) for r in fwd.rules] == [
        (33, "oifname vmap @filter-forward-in-jumps", False),
        (34, "iifname vmap @filter-forward-out-jumps", False),
    ]
    assert chains["nat-OUTPUT"].priority == "-100"
    drop = chains["filter-forward-in__br-40d652e0aac8"].rules[-1]
    assert (drop.handle, drop.text) == (28, 'counter drop comment "UNPUBLISHED PORT DROP"')
    assert drop.has_counter and drop.packets is None
    assert chains["nat-postrouting-in__docker0"].rules == ()
    assert chains["nat-postrouting-in__docker0"].hook is None
    raw = chains["raw-PREROUTING"].rules[0]
    assert raw.text == (
        'ip daddr 172.18.0.2 iifname != "br-40d652e0aac8" counter drop comment "DROP DIRECT ACCESS"'
    )


def test_listing_with_counter_values_gives_the_same_text() -> None:
    (plain,) = parse_nft_text(_read("docker29-bridges.nft-s-a.txt"))
    (valued,) = parse_nft_text(_read("docker29-bridges.nft-a-ruleset.txt"))
    texts = [(c.name, r.handle, r.text) for c in plain.chains for r in c.rules]
    assert texts == [(c.name, r.handle, r.text) for c in valued.chains for r in c.rules]
    counted = [r for c in valued.chains for r in c.rules if r.has_counter]
    assert counted and all(r.packets == 0 and r.bytes == 0 for r in counted)


def test_ruleset_with_iptables_nft_tables() -> None:
    tables = parse_nft_text(_read("nft-a-ruleset.txt"))
    assert [(t.family, t.name) for t in tables] == [
        ("ip", "filter"),
        ("ip", "nat"),
        ("ip", "docker-bridges"),
        ("inet", "t2"),
    ]
    nat = {c.name: c for c in tables[1].chains}
    rule = nat["OUTPUT"].rules[0]
    assert rule.text == "ip daddr != 127.0.0.0/8 fib daddr type local counter jump DOCKER"
    assert (rule.handle, rule.packets, rule.bytes) == (7, 1, 84)
    t2 = tables[3].chains[0]
    assert t2.policy == "drop"
    assert [(r.text, r.has_counter) for r in t2.rules] == [
        ("tcp dport 22 accept", False),
        ("counter", True),
    ]


def test_rule_text_keeps_quoted_counter_words() -> None:
    text, pk, by, has = parse_nft_rule_text(
        'counter packets 5 bytes 300 accept comment "counter packets 1 bytes 2"'
    )
    assert text == 'counter accept comment "counter packets 1 bytes 2"'
    assert (pk, by, has) == (5, 300, True)
    assert parse_nft_rule_text('accept comment "counter"')[3] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chain x {\n}\n", "line 1: expected 'table FAMILY NAME {'"),
        ("table ip t {\n\tchain c {\n\t\taccept # handle 3\n", "line 4: unexpected end of input"),
        (
            "table ip t {\n\tchain c {\n\t\tip saddr { 1.2.3.4 accept\n\t}\n}\n",
            "line 3: unbalanced",
        ),
        ("table ip t {\n\tchain {\n\t}\n}\n", "line 2: malformed chain header"),
    ],
)
def test_nft_malformed_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("{", r"\{")):
        parse_nft_text(text)
