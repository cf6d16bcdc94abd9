"""The report's PNG plots (matplotlib, if installed): the fixed-rate latency curves, the
overload step's latency by status and RSS, and each demo workload's before/after."""

from __future__ import annotations

from .demo import compared_workloads
from .fmt import MIB
from .loadgen import CURVE_QS, QS
from .log import log


def make_plots(ctx, R) -> list[str]:
    """Writes the plots into ctx.out; returns their file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plots (run.sh installs it into loadtest/.venv)")
        return []
    made = []
    if R.get("a"):
        made.append(latency_plot(plt, ctx, R["a"]))
    if R.get("b"):
        made.append(overload_plot(plt, ctx, R["b"]))
    for wl, r0, r1 in compared_workloads(R.get("c")):
        made.append(before_after_plot(plt, ctx, wl, r0, r1))
    return made


def _save(plt, fig, ctx, name: str) -> str:
    fig.tight_layout()
    fig.savefig(ctx.out / name)
    plt.close(fig)
    return name


def latency_plot(plt, ctx, a: dict) -> str:
    """Latency against percentile (log-log) for each fixed-rate step, one panel per transport."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80, sharey=True)
    for ax, transport in zip(axes, ("unix", "tcp")):
        for rr in a["rates"].get(transport, []):
            curve = rr.get("_curve") or []
            if not curve:
                continue
            pts = [(1 / (1 - q), c) for q, c in zip(CURVE_QS, curve) if q >= 0.5]
            ax.plot([x for x, _ in pts], [c * 1000 for _, c in pts], marker=".",
                    label=f"{rr['frac']:.0%} ({rr['rate']:.0f}/s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([2, 10, 100, 1000, 10000])
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_title(f"4 KB, {transport}, open loop (CO-corrected)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("latency (ms)")
    return _save(plt, fig, ctx, "latency-4k.png")


def overload_plot(plt, ctx, b: dict) -> str:
    """The overload step: latency by status (from the send), and normd's RSS over time."""
    o = b["overload"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0), dpi=80)
    qs = list(QS)
    for st in sorted(o["lat_uncorrected_by_status"]):
        vals = [o["lat_uncorrected_by_status"][st][q] for q in qs]
        axes[0].plot(qs, [v * 1000 for v in vals], marker="o", label=st)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency (ms)")
    axes[0].set_title("overload: latency by status (from send)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[0].grid(True, alpha=0.3)
    tl = o.get("rss_timeline") or []
    axes[1].plot([t for t, _ in tl], [v / MIB for _, v in tl])
    axes[1].set_xlabel("s")
    axes[1].set_ylabel("normd RSS (MiB)")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("overload: normd RSS", fontsize=9)
    axes[1].grid(True, alpha=0.3)
    return _save(plt, fig, ctx, "overload.png")


def before_after_plot(plt, ctx, wl: dict, r0: dict, r1: dict) -> str:
    """One demo workload: app + normd RSS, and the app's endpoint p95 and p99, per rollout."""
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.8), dpi=80)
    fig.suptitle(f"demo app, {wl['set']} set at {wl['rate']}/s", fontsize=9)
    labels = ["ROLLOUT 0", "ROLLOUT 100"]
    axes[0].bar(labels, [r0["app_rss"] / MIB, r1["app_rss"] / MIB], label="app")
    axes[0].bar(labels, [r0["normd_rss"] / MIB, r1["normd_rss"] / MIB],
                bottom=[r0["app_rss"] / MIB, r1["app_rss"] / MIB], label="normd")
    axes[0].set_title("RSS (MiB)", fontsize=9)
    axes[0].legend(fontsize=7)
    for ax, key, title in ((axes[1], "p95", "endpoint p95 (ms)"), (axes[2], "p99", "endpoint p99 (ms)")):
        ax.bar(labels, [r0["stats"]["latency"][key], r1["stats"]["latency"][key]])
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=7)
    return _save(plt, fig, ctx, f"before-after-{wl['set']}.png")
