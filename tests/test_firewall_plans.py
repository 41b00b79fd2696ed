"""Pure tests of the chain cache (exporter/firewall/plans.py): reuse and the structure token."""

from __future__ import annotations

import pytest

from exporter.firewall.plans import ChainCache, ChainPlan
from exporter.model import BACKEND_IPTABLES_NFT, Chain, Rule, Rules, Table

KEY = (BACKEND_IPTABLES_NFT, "ipv4", "filter", "FORWARD")
PLAN = ChainPlan("FORWARD", ("-j DOCKER-USER", "-o docker0 -j DROP"), True, "ACCEPT")


def poll(
    cache: ChainCache, plan: ChainPlan, counters: list[tuple[int | None, int | None]]
) -> tuple[Chain, int]:
    cache.begin()
    packets = tuple(p for p, _ in counters)
    nbytes = tuple(b for _, b in counters)
    chain = cache.chain(KEY, plan, tuple(counters), (packets, nbytes), (5, 500))
    cache.end()
    return chain, cache.structure_of([Table("ipv4", BACKEND_IPTABLES_NFT, "filter", (chain,))])


def test_chain_from_plan_and_counters() -> None:
    chain, token = poll(ChainCache(), PLAN, [(1, 10), (2, 20)])
    assert chain == Chain(
        name="FORWARD",
        rules=(Rule("-j DOCKER-USER", 1, 10), Rule("-o docker0 -j DROP", 2, 20)),
        policy="ACCEPT",
        policy_packets=5,
        policy_bytes=500,
        hook=None,
    )
    assert token > 0


def test_unchanged_counters_give_the_same_objects_and_token() -> None:
    cache = ChainCache()
    first, token = poll(cache, PLAN, [(1, 10), (2, 20)])
    again, token2 = poll(cache, PLAN, [(1, 10), (2, 20)])
    assert again is first
    assert token2 == token
    # one rule's counters moved: a new chain over the new columns, same token; its rules
    # are made only when read
    moved, token3 = poll(cache, PLAN, [(1, 10), (3, 30)])
    assert moved is not first
    assert isinstance(moved.rules, Rules)
    assert moved.counter_columns() == ((1, 3), (10, 30))
    assert moved.rules[0] == first.rules[0]
    assert moved.rules[1] == Rule("-o docker0 -j DROP", 3, 30)
    assert moved.rules == (first.rules[0], Rule("-o docker0 -j DROP", 3, 30))
    assert token3 == token


def test_a_new_plan_or_a_rule_losing_its_counter_is_a_new_structure() -> None:
    cache = ChainCache()
    first, token = poll(cache, PLAN, [(1, 10), (2, 20)])
    # the same text read anew (a new, equal plan): same structure, the chain rebuilt
    same_text = ChainPlan("FORWARD", PLAN.texts, True, "ACCEPT")
    rebuilt, token2 = poll(cache, same_text, [(1, 10), (2, 20)])
    assert rebuilt == first
    assert token2 == token
    uncounted, token3 = poll(cache, same_text, [(1, 10), (None, None)])
    assert uncounted.rules[1] == Rule("-o docker0 -j DROP", None, None)
    assert token3 != token
    changed = ChainPlan("FORWARD", ("-j DOCKER-USER", "-o docker1 -j DROP"), True, "ACCEPT")
    _, token4 = poll(cache, changed, [(1, 10), (None, None)])
    assert token4 not in (token, token3)


def test_chains_not_built_in_a_poll_are_forgotten() -> None:
    cache = ChainCache()
    first, _ = poll(cache, PLAN, [(1, 10), (2, 20)])
    cache.begin()
    cache.end()  # a poll without the chain (its table gone)
    again, _ = poll(cache, PLAN, [(1, 10), (2, 20)])
    assert again == first
    assert again is not first


def test_counters_that_do_not_fit_the_plan_are_an_error() -> None:
    cache = ChainCache()
    cache.begin()
    try:
        cache.chain(KEY, PLAN, (), ((1,), (10,)), (None, None))
    except ValueError as exc:
        assert str(exc) == "chain FORWARD: 2 rules but 1 counters"
    else:
        raise AssertionError("a chain with fewer counters than rules was built")


def test_rules_read_as_the_tuple_of_their_rules() -> None:
    rules = Rules(("-j A", "-j B", "-j A"), (1, None, 3), (10, None, 30))
    want = (Rule("-j A", 1, 10), Rule("-j B", None, None), Rule("-j A", 3, 30))
    assert rules == want and want == rules
    assert tuple(rules) == want and rules[1:] == want[1:] and rules[-1] == want[-1]
    assert len(rules) == 3 and hash(rules) == hash(want)
    assert Chain("X", rules) == Chain("X", want)
    with pytest.raises(ValueError, match="3 rule texts for 2 packet and 3 byte counters"):
        Rules(("a", "b", "c"), (1, 2), (1, 2, 3))
