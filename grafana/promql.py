"""Pure helpers over dashboards' and rules' PromQL: metric names, the contract, variables.

Used by the tests (only contract names in dashboards and alerts; every query run
against a real Prometheus with its variables substituted).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Names PromQL itself defines that can stand without "(" after them.
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:$.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_CONTRACT_CELL = re.compile(r"`([^`]+)`")
GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range", "__range_s"})
ALSO_ALLOWED = frozenset({"up"})  # plus every process_* name


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        if text[m.end() :].lstrip().startswith("("):
            continue  # a function call
        if m.group().lower() not in _KEYWORDS:
            names.add(m.group())
    return names


def parse_contract_metrics(markdown: str) -> set[str]:
    """Every metric name of the contract's tables (``..._x`` shorthands expanded)."""
    names: set[str] = set()
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        cell = line.split("|")[1]
        tokens = _CONTRACT_CELL.findall(cell)
        full = [t for t in tokens if t.startswith("netpath_")]
        for token in tokens:
            if token.startswith("netpath_"):
                names.add(token)
            elif token.startswith("...") and full:
                m = re.match(r"(.*?)_(?:receive|transmit)_", full[0])
                if m:
                    names.add(m.group(1) + token[3:])
    return names


def allowed(name: str, contract: set[str]) -> bool:
    """A name dashboards and alerts may use: the contract's, ``up``, or ``process_*``."""
    return name in contract or name in ALSO_ALLOWED or name.startswith("process_")


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, rows and panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", []) or []


def panel_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every Prometheus target."""
    out = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []) or []:
            if "expr" in target:
                out.append((panel.get("title", ""), target.get("refId", ""), target["expr"]))
    return out


def variable_queries(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Query variables: name -> ``label_values(...)`` text."""
    out = {}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        out[var["name"]] = query["query"] if isinstance(query, dict) else str(query)
    return out


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def parse_label_values(query: str) -> tuple[str, str]:
    """``label_values(SELECTOR, label)`` -> (SELECTOR, label)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
    if not m:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group(1).strip(), m.group(2)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` / ``${name}`` by ``values[name]`` (longest names first)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)
