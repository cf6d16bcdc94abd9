"""Reading normd's Prometheus /metrics text: the sum of a series, and a histogram's share
of observations above a bucket between two scrapes."""

from __future__ import annotations

import re


def metric_sum(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def metric_delta(t0: str, t1: str, name: str, **labels) -> float:
    """How much a counter grew between two scrapes."""
    return metric_sum(t1, name, **labels) - metric_sum(t0, name, **labels)


def share_above(t0: str, t1: str, name: str, le: str, **labels) -> float | None:
    """Share of observations of histogram `name` above bucket `le` between two scrapes."""
    total = metric_delta(t0, t1, name + "_bucket", le="+Inf", **labels)
    if total <= 0:
        return None
    return 1 - metric_delta(t0, t1, name + "_bucket", le=le, **labels) / total
