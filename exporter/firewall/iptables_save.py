"""Parser of ``iptables-save`` / ``ip6tables-save`` text (with or without ``-c``).

Pure: text in, :class:`exporter.model.Table` out. A rule's text is the line
without its ``[packets:bytes]`` prefix and without ``-A CHAIN``, exactly as the
tool printed it (``-o br-40d652e0aac8 -j DROP``). Malformed input raises a
``ValueError`` that names the line number and the problem.
"""

from __future__ import annotations

from exporter.model import Chain, Rule, Table

_BUILTIN_POLICIES = frozenset({"ACCEPT", "DROP", "QUEUE", "RETURN"})


def _parse_counters(token: str, lineno: int) -> tuple[int, int]:
    """``[123:4567]`` -> (123, 4567)."""
    if len(token) < 5 or token[0] != "[" or token[-1] != "]":
        raise ValueError(f"line {lineno}: malformed counters {token!r} (expected [packets:bytes])")
    packets, sep, nbytes = token[1:-1].partition(":")
    if not (
        sep and packets.isascii() and packets.isdigit() and nbytes.isascii() and nbytes.isdigit()
    ):
        raise ValueError(f"line {lineno}: malformed counters {token!r} (expected [packets:bytes])")
    return int(packets), int(nbytes)


class _TableBuilder:
    __slots__ = ("chains", "name", "order", "policies")

    def __init__(self, name: str) -> None:
        self.name = name
        self.order: list[str] = []
        self.chains: dict[str, list[Rule]] = {}
        self.policies: dict[str, tuple[str, int | None, int | None]] = {}

    def build(self, family: str, backend: str) -> Table:
        chains = []
        for name in self.order:
            policy = self.policies.get(name)
            if policy is None:
                chains.append(Chain(name=name, rules=tuple(self.chains[name])))
            else:
                chains.append(
                    Chain(
                        name=name,
                        rules=tuple(self.chains[name]),
                        policy=policy[0],
                        policy_packets=policy[1],
                        policy_bytes=policy[2],
                    )
                )
        return Table(family=family, backend=backend, name=self.name, chains=tuple(chains))


def parse_iptables_save(text: str, family: str, backend: str) -> list[Table]:
    """Parse the whole output of ``iptables-save [-c]`` into tables, in file order.

    ``family`` is "ipv4" or "ipv6", ``backend`` one of the ``BACKEND_IPTABLES_*``
    constants; both are copied into every table. Chains keep their declaration
    order, rules their traversal order (duplicates kept). Built-in chains carry
    their policy and its counters (None when the text has none).
    """
    tables: list[Table] = []
    seen_tables: set[str] = set()
    current: _TableBuilder | None = None
    lineno = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if line[0] == "*":
            if current is not None:
                raise ValueError(
                    f"line {lineno}: table {line[1:]!r} starts before COMMIT of {current.name!r}"
                )
            name = line[1:]
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"line {lineno}: malformed table header {line!r}")
            if name in seen_tables:
                raise ValueError(f"line {lineno}: table {name!r} appears twice")
            seen_tables.add(name)
            current = _TableBuilder(name)
            continue
        if current is None:
            raise ValueError(
                f"line {lineno}: {line[:40]!r} outside a table (no *table line before it)"
            )
        if line == "COMMIT":
            tables.append(current.build(family, backend))
            current = None
            continue
        if line[0] == ":":
            _parse_chain_line(current, line, lineno)
            continue
        packets: int | None = None
        nbytes: int | None = None
        body = line
        if line[0] == "[":
            token, _, body = line.partition(" ")
            packets, nbytes = _parse_counters(token, lineno)
        if not body.startswith("-A "):
            raise ValueError(f"line {lineno}: expected a rule (-A CHAIN ...), got {line[:40]!r}")
        chain, _, rest = body[3:].partition(" ")
        if not chain:
            raise ValueError(f"line {lineno}: rule without a chain name")
        rules = current.chains.get(chain)
        if rules is None:
            raise ValueError(f"line {lineno}: rule for undeclared chain {chain!r}")
        rules.append(Rule(text=rest.strip(), packets=packets, bytes=nbytes))
    if current is not None:
        raise ValueError(f"line {lineno}: table {current.name!r} has no COMMIT")
    return tables


def _parse_chain_line(table: _TableBuilder, line: str, lineno: int) -> None:
    """``:NAME POLICY [p:b]`` (policy ``-`` for user chains; counters optional)."""
    parts = line[1:].split()
    if len(parts) not in (2, 3):
        raise ValueError(
            f"line {lineno}: malformed chain line {line[:60]!r} (expected :CHAIN POLICY [p:b])"
        )
    name, policy = parts[0], parts[1]
    if name in table.chains:
        raise ValueError(f"line {lineno}: chain {name!r} declared twice in table {table.name!r}")
    counters: tuple[int | None, int | None] = (None, None)
    if len(parts) == 3:
        counters = _parse_counters(parts[2], lineno)
    if policy == "-":
        pass
    elif policy in _BUILTIN_POLICIES:
        table.policies[name] = (policy, counters[0], counters[1])
    else:
        raise ValueError(f"line {lineno}: unknown policy {policy!r} for chain {name!r}")
    table.order.append(name)
    table.chains[name] = []
