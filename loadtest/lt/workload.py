"""What the load steps send: the shared payload sets as oha body files (every document in
turn), and the deadline headers."""

from __future__ import annotations

from pathlib import Path

from .settings import PAYLOADS

# Capacity steps: a budget that covers 32 queued 64 KB calls, so a closed loop is not
# cut short by deadline-based admission (the overload steps test that).
DEADLINE_1S = ("X-Deadline-Ms: 1000",)
# The budget a caller of the sidecar is expected to send (normd's default too).
DEADLINE_20MS = ("X-Deadline-Ms: 20",)


def payload_dir(size: str) -> Path:
    """The directory of a shared set ("1k", "4k", "64k"); exits if it holds no documents."""
    d = PAYLOADS / size
    if not any(d.glob("*.json")):
        raise SystemExit(f"no payloads in {d} (shared/ must sit next to the repository, "
                         "or NORMD_SHARED=DIR)")
    return d


def payload_lines(ctx, size: str) -> Path:
    """All documents of a shared set, one per line (they are single-line JSON), for
    oha -Z: every request takes the next document in turn. Records the set's size in
    ctx.sets for the report."""
    out = ctx.tmp / f"payloads-{size}.lines"
    if not out.exists():
        files = sorted(payload_dir(size).glob("*.json"))
        docs = [f.read_bytes() for f in files]
        for f, b in zip(files, docs):
            if b"\n" in b.rstrip(b"\n"):
                raise SystemExit(f"{f} spans several lines; oha -Z needs one document per line")
        out.write_bytes(b"\n".join(b.rstrip(b"\n") for b in docs) + b"\n")
        ctx.sets[size] = {"files": len(docs), "mean_bytes": sum(map(len, docs)) / len(docs)}
    return out
