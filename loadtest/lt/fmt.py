"""How the report writes figures: seconds as ms or µs, bytes as MiB, shares, statuses,
machine busy, percentile cells and verdicts."""

from __future__ import annotations

# The statuses normd may answer under load; anything else, or a connection error, is a fault.
ANSWERS = ("200", "429", "503", "504")
MIB = 1048576


def ms(v, nd=3):
    return "–" if v is None else f"{v * 1000:.{nd}f}"


def us(v):
    return "–" if v is None else f"{v * 1e6:.0f}"


def mib(v):
    return "–" if v is None else f"{v / MIB:.1f}"


def pc(v):
    return "–" if v is None else f"{v:.2%}"


def ideal(r: dict) -> str:
    i = r.get("ideal")
    return f"{ms(i['p99'])} / {ms(i['p99.9'])}" if i else "–"


def statuses(r):
    return ", ".join(f"{k}: {v}" for k, v in sorted(r["status"].items())) or "none"


def non_200(r) -> dict:
    return {k: v for k, v in r["status"].items() if k != "200"}


def unexpected(r) -> dict:
    """Statuses outside ANSWERS, with their counts."""
    return {k: v for k, v in r["status"].items() if k not in ANSWERS}


def only_answers(r) -> bool:
    """Every response was one of ANSWERS and no connection failed."""
    return not unexpected(r) and not r["errors"]


def busy(r) -> str:
    """The whole machine's CPU during the step, in cores."""
    return f"{r['machine_busy_cpu_s'] / r['wall']:.2f}"


def cells(v: dict, unit) -> str:
    """p50 | p90 | p99 | p99.9 of a percentile record, each written by `unit` (ms or us)."""
    return " | ".join(unit(v[q]) for q in ("p50", "p90", "p99", "p99.9"))


def verdict(ok):
    return "–" if ok is None else ("**pass**" if ok else "**MISS**")
