"""report.md: the run's header, then one function per part and table (normd alone,
overload, the demo app, the in-process pipeline), the targets and how to read them."""

from __future__ import annotations

import os
import statistics

from .demo import compared_workloads
from .fmt import busy, cells, ideal, mib, ms, non_200, only_answers, pc, statuses, unexpected, us, verdict


def report(ctx, R, pngs) -> str:
    a, b, c, d = R.get("a"), R.get("b"), R.get("c"), R.get("d")
    L = header(ctx)
    if a:
        L += normd_alone(ctx, a) + saturation_table(a) + latency_table(a)
        L += _png(pngs, "latency-4k.png", "latency percentiles")
    if b:
        L += overload_summary(ctx, b["overload"]) + overload_latency_table(b["overload"])
        L += refusal_table(b) + single_caller_table(b.get("single")) + large_bodies_line(b.get("overload64k"))
        L += _png(pngs, "overload.png", "overload")
    if c and c.get("workloads"):
        L += demo_intro(ctx)
    for wl, r0, r1 in compared_workloads(c):
        L += demo_table(wl, r0, r1) + demo_runs_lines(wl)
        L += _png(pngs, f"before-after-{wl['set']}.png", f"before/after {wl['set']}")
    if d:
        L += pipeline_line(a, d)
    L += targets_table(ctx, targets(a, b, c, d)) + how_to_read()
    return "\n".join(L)


def _png(pngs, name: str, alt: str) -> list[str]:
    return [f"![{alt}]({name})", ""] if name in pngs else []


def header(ctx) -> list[str]:
    """What ran where: binary and tools, machine and pinning, revision, load, command, sets."""
    L = []
    w = L.append
    w(f"# normd load test — {ctx.stamp}{' (SMOKE: tiny durations and rates, figures meaningless)' if ctx.smoke else ''}")
    w("")
    w(f"- normd: `{ctx.normd_rel}` ({ctx.build}); oha {ctx.oha_version}; node {ctx.node_version}")
    w(f"- machine: {os.cpu_count()} CPUs, `{ctx.cpu_model}`, kernel {os.uname().release}; "
      f"pinning: {'normd on core 0, load generator on core 1' if ctx.pin else 'none (fewer than 2 CPUs)'}")
    w(f"- repo: `{ctx.git}`")
    w(f"- load average at start: {ctx.loadavg}; each table's *busy* column is the whole "
      f"machine's CPU seconds per second during the step (2.0 = both cores busy), so "
      f"foreign load shows up: compare it with server + generator CPU")
    w(f"- command: `{ctx.command}`")
    w("")
    for s, info in sorted(ctx.sets.items()):
        w(f"- payload set `{s}`: {info['files']} documents, mean {info['mean_bytes']:.0f} B, all of them "
          f"in turn (oha `-Z`, one document per line)")
    w("")
    return L


# ----------------------------------------------------------------------------- a. normd alone


def normd_alone(ctx, a) -> list[str]:
    """Heading, server command line, cold start and idle RSS."""
    L = []
    w = L.append
    w("## a. normd alone (4 KB set, `?profile=bench`: trim, order.v1, gzip 1; `--workers 1`)")
    w("")
    w(f"Server: `{a['sat']['unix']['cmd']}`")
    w("")
    cs = sorted(a["cold_start_ms"])
    w(f"- **cold start → ready**: median {statistics.median(cs):.1f} ms over {len(cs)} starts "
      f"(min {cs[0]:.1f}, max {cs[-1]:.1f}): spawn → first 200 from `GET /readyz` on the socket, polled every 0.2 ms")
    w(f"- **idle RSS**: {mib(a['idle_rss'])} MiB (after {ctx.p['idle_wait']} s idle, self-probe running); "
      f"after all section-a load, idle again: {mib(a.get('rss_after_load'))} MiB")
    w("")
    return L


def saturation_table(a) -> list[str]:
    """The closed-loop steps: 4 KB over both transports, then the other sets."""
    L = []
    w = L.append
    w("### Saturation (closed loop, 32 keep-alive connections, `--max-queue 64`, `X-Deadline-Ms: 1000`)")
    w("")
    w("| set | transport | 200/s | other statuses / errors | p50 ms | p99 ms | p99.9 ms | normd CPU (cores) | normd CPU µs/call | generator CPU (cores) | busy | peak RSS MiB |")
    w("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [("4k", a["sat"]["unix"]), ("4k", a["sat"]["tcp"])] + [(s, r) for s, r in a["sizes"].items()]
    for s, r in rows:
        w(f"| {s} | {r['transport']} | {r['rps_200']:,.0f} | {non_200(r) or '–'} {r['errors'] or ''} | "
          f"{ms(r['lat']['p50'])} | {ms(r['lat']['p99'])} | {ms(r['lat']['p99.9'])} | "
          f"{r['server_cpu_util']:.2f} | {us(r.get('server_cpu_s_per_call'))} | {r['gen_cpu_s'] / r['seconds']:.2f} | {busy(r)} | {mib(r['peak_rss'])} |")
    w("")
    return L


def latency_table(a) -> list[str]:
    """The fixed-rate steps per transport, the /livez floor under the 50 % row, and the
    notes on the ideal, floor, burst and histogram columns."""
    L = []
    w = L.append
    w("### Latency at fixed rates (open loop, `-q`, coordinated-omission corrected, 32 connections)")
    w("")
    w("| transport | rate | offered/s | 200/s | other | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | ideal p99 / p99.9 ms | normd CPU µs/call | busy | oha burst | server > 1 ms | queue wait > 1 ms |")
    w("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for transport in ("unix", "tcp"):
        for rr in a["rates"][transport]:
            w(f"| {transport} | {rr['frac']:.0%} of sat. | {rr['rate']:,.0f} | {rr['rps_200']:,.0f} | "
              f"{non_200(rr) or '–'} {rr['errors'] or ''} | {ms(rr['lat']['p50'])} | {ms(rr['lat']['p90'])} | "
              f"{ms(rr['lat']['p99'])} | {ms(rr['lat']['p99.9'])} | {ms(rr['lat']['max'])} | "
              f"{ideal(rr)} | {us(rr.get('server_cpu_s_per_call'))} | {busy(rr)} | {rr.get('burst_mean', 0):.1f} | "
              f"{pc(rr.get('server_over_1ms'))} | {pc(rr.get('queue_wait_over_1ms'))} |")
            if transport == "unix" and rr["frac"] == 0.5 and a.get("rate_floor"):
                fl = a["rate_floor"]
                w(f"| unix | floor: `GET /livez`, same rate | {fl['rate']:,.0f} | {fl['rps_200']:,.0f} | – | "
                  f"{ms(fl['lat']['p50'])} | {ms(fl['lat']['p90'])} | {ms(fl['lat']['p99'])} | "
                  f"{ms(fl['lat']['p99.9'])} | {ms(fl['lat']['max'])} | – | – | "
                  f"{busy(fl)} | {fl.get('burst_mean', 0):.1f} | – | – |")
    w("")
    w("*ideal*: the p99 and p99.9 that one server busy for exactly the row's *normd CPU "
      "µs/call*, one call at a time and never stalled, would give on oha's own send schedule "
      "of that step: the generator's pacing plus normd's own CPU. Above it, the measured "
      "figure is what this machine's scheduling and stalls add.")
    w("")
    w("*floor*: the 50 % row's schedule sent to `GET /livez`, which does no work and never "
      "queues: the generator's pacing plus this machine's scheduling, the least any row can "
      "show. *oha burst*: mean number of requests oha schedules together (< 100 µs apart): its `-q` "
      "pacing is not smooth, and a burst of k requests on one core makes the k-th wait k−1 "
      "service times. *server > 1 ms*: share of calls whose time inside normd (handler entry → "
      "response built, `normd_request_duration_seconds{route=\"norm\"}`) exceeded 1 ms; "
      "*queue wait > 1 ms*: the same for `normd_queue_wait_seconds` (both from /metrics "
      "before/after the step). *normd CPU µs/call*: normd's CPU time over the step divided "
      "by the calls answered; below saturation each call also pays its threads' sleep and "
      "wake-up, which a saturated server amortizes.")
    w("")
    return L


# ----------------------------------------------------------------------------- b. overload


def overload_summary(ctx, o) -> list[str]:
    """Heading, server command line, offered and achieved load, goodput, statuses,
    rejections and peak RSS of the 10x step."""
    L = []
    w = L.append
    tot = o["requests"] or 1
    w("## b. Overload (4 KB, Unix socket, `X-Deadline-Ms: 20`, default queue 16, `--workers 1`)")
    w("")
    w(f"Server: `{o['cmd']}`")
    w("")
    w(f"- requested offered load: {o['requested_rate']:,.0f}/s (10 × saturation) for {o['seconds']:.1f} s, "
      f"{ctx.p['overload_conns']} connections; **achieved** by the generator: {o['rps_all']:,.0f}/s "
      f"({o['rps_all'] / (o['requested_rate'] / 10):.1f} × saturation; generator CPU "
      f"{o['gen_cpu_s'] / o['seconds']:.2f} cores)")
    w(f"- **goodput**: {o['rps_200']:,.0f} 200/s ({o['rps_200'] / (o['requested_rate'] / 10):.0%} of saturation)")
    shares = ", ".join(f"{k}: {v} ({v / tot:.1%})" for k, v in sorted(o["status"].items()))
    w(f"- statuses: {shares}")
    w(f"- outside 200/429/503/504: {unexpected(o) or 'none'}; connection errors: {o['errors'] or 'none'}")
    w(f"- normd's own count of rejections in the window: {o['rejections']}")
    w(f"- **peak RSS of normd**: {mib(o['peak_rss'])} MiB; normd CPU {o['server_cpu_util']:.2f} cores")
    w("")
    return L


def overload_latency_table(o) -> list[str]:
    """Latency by status in the 10x step, from the actual send."""
    L = []
    w = L.append
    w("Latency by status, measured from the actual send (the generator could not keep the schedule, "
      "so the CO-corrected figures mostly measure its own backlog; they are in the raw JSON):")
    w("")
    w("| status | n | p50 ms | p90 ms | p99 ms | p99.9 ms |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for st, v in sorted(o["lat_uncorrected_by_status"].items()):
        w(f"| {st} | {o['lat_by_status'][st]['n']} | {cells(v, ms)} |")
    w("")
    return L


def refusal_table(b) -> list[str]:
    """The 1-slot queue's answers by status, and the idle /livez floor."""
    L = []
    w = L.append
    rj = b["reject"]
    w(f"**429 latency with a 1-slot queue** (`{rj['cmd']}`; closed loop, 4 connections, "
      f"{rj['seconds']:.1f} s; the generator is not saturated here, so this is the server's answer time "
      f"plus the loopback round trip): statuses {statuses(rj)}; errors {rj['errors'] or 'none'}")
    w("")
    w("| status | n | p50 µs | p90 µs | p99 µs | p99.9 µs |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for st, v in sorted(rj["lat_by_status"].items()):
        w(f"| {st} | {v['n']} | {cells(v, us)} |")
    fl = b.get("floor")
    if fl and fl.get("lat_by_status", {}).get("200"):
        v = fl["lat_by_status"]["200"]
        w(f"| floor: `GET /livez`, idle server, 1 connection | {v['n']} | {cells(v, us)} |")
    w("")
    return L


def single_caller_table(sc) -> list[str]:
    """One caller's answers during the flood, beside /livez then and on an idle normd."""
    if not sc:
        return []
    L = []
    w = L.append
    w(f"**One caller during that flood** (an extra connection at {sc['rate']}/s, open loop, "
      f"CO-corrected; the flood's statuses: {sc['flood_status']}): the 429 it gets, next to "
      "`GET /livez` sent the same way at the same moment, and to an idle normd. The flood row "
      "above answers refusals back to back on busy cores; a caller that sends now and then "
      "also pays for waking both sides, which on this VM costs more than the refusal.")
    w("")
    w("| request | status | n | p50 µs | p90 µs | p99 µs | p99.9 µs |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for key, what in (("idle_livez", "`GET /livez`, idle normd"),
                      ("busy_norm", "`POST /norm`, during the flood"),
                      ("busy_livez", "`GET /livez`, during the flood")):
        for st, v in sorted(sc[key].get("lat_by_status", {}).items()):
            w(f"| {what} | {st} | {v['n']} | {cells(v, us)} |")
    w("")
    return L


def large_bodies_line(o64) -> list[str]:
    """Statuses and connection errors of the 64 KB bodies at the 20 ms budget."""
    if not o64:
        return []
    return [f"**64 KB bodies at the default budget** (closed loop, 32 connections, `X-Deadline-Ms: 20`, "
            f"{o64['seconds']:.1f} s): statuses {statuses(o64)}; outside 200/429/503/504: {unexpected(o64) or 'none'}; "
            f"**connection errors: {o64['errors'] or 'none'}**", ""]


# ----------------------------------------------------------------------------- c. demo app


def demo_intro(ctx) -> list[str]:
    """Heading, how the runs are repeated and summarised, and where each process runs."""
    P = ctx.p
    L = []
    w = L.append
    w(f"## c. Demo app before/after (POST /orders, open loop, {P['app_warmup']} s warm-up, "
      f"{P['app']} s measured, {P['app_repeats']} runs per rollout)")
    w("")
    w(f"Each workload runs ROLLOUT=0 and ROLLOUT=100 in turn, {P['app_repeats']} times (fresh "
      f"normd and app each run). Every figure in the tables is the median over the runs of "
      f"that rollout; the line under each table lists every run's endpoint p99 and app RSS.")
    w("")
    w(f"Placement, the same for every run: normd on core 0, the app (`node server.js`) on core "
      f"{ctx.app_cpu}, the load generator on core {ctx.gen_cpu_app} (sharing normd's core: the app keeps a core "
      f"to itself in both runs, so the 'after' run is not flattered). App env: `ROLLOUT=0|100 "
      f"NORMD_PROFILE=bench NORMD_DEADLINE_MS=20 SCHEMA=shared/bench/schemas/order.v1.json`. "
      f"Two workloads: the 4 KB set, where the in-app job costs a few hundred µs, and the "
      f"64 KB set, where it costs milliseconds of the app's event loop.")
    w("")
    return L


def demo_table(wl, r0, r1) -> list[str]:
    """One workload, ROLLOUT=0 beside ROLLOUT=100 (medians over the runs)."""
    L = []
    w = L.append
    w(f"### {wl['set']} set at {wl['rate']}/s")
    w("")
    w("| | ROLLOUT=0 (in-app) | ROLLOUT=100 (normd) |")
    w("| --- | ---: | ---: |")

    def row(label, f):
        w(f"| {label} | {f(r0)} | {f(r1)} |")
    row("requests served (app `/stats`)", lambda r: f"{r['served']:,}")
    row("by path", lambda r: str(r["stats"]["requests"]["by_path"]))
    row("fallbacks", lambda r: str({k: v for k, v in ((r['stats'].get('client') or {}).get('fallback_by_reason') or {}).items() if v}) or "–")
    row("statuses at the generator", lambda r: statuses(r))
    row("app RSS MiB (end / peak)", lambda r: f"{mib(r['app_rss'])} / {mib(r['app_peak_rss'])}")
    row("app heap used MiB", lambda r: mib(r["stats"]["process"]["heap_used_bytes"]))
    row("normd RSS MiB (end / peak)", lambda r: f"{mib(r['normd_rss'])} / {mib(r['normd_peak_rss'])}")
    row("**total RSS MiB** (app + normd, end)", lambda r: f"**{mib(r['app_rss'] + r['normd_rss'])}**")
    row("app GC pauses: count / p95 ms / total ms", lambda r: f"{r['stats']['gc']['count']} / {r['stats']['gc']['p95']:.2f} / {r['stats']['gc']['total']:.0f}")
    row("**endpoint p95 / p99 ms** (app handler)", lambda r: f"**{r['stats']['latency']['p95']:.2f} / {r['stats']['latency']['p99']:.2f}**")
    row("client-side p50 / p99 ms (oha, CO-corrected)", lambda r: f"{ms(r['lat']['p50'], 2)} / {ms(r['lat']['p99'], 2)}")
    row("app CPU s / normd CPU s", lambda r: f"{r['app_cpu_s']:.2f} / {r['normd_cpu_s']:.2f}")
    row("**CPU per request µs** (app + normd)", lambda r: f"**{r['cpu_us_per_req']:.0f}**" if r["cpu_us_per_req"] else "–")
    row("busy (machine, cores)", busy)
    w("")
    return L


def demo_runs_lines(wl) -> list[str]:
    """Every run's endpoint p99 and app RSS, per rollout, when there was more than one run."""
    reps = wl.get("reps") or []
    if len(reps) <= 1:
        return []
    L = []
    for rollout in (0, 100):
        p99s = ", ".join(f"{x[rollout]['stats']['latency']['p99']:.2f}" for x in reps)
        rss = ", ".join(mib(x[rollout]["app_rss"]) for x in reps)
        L.append(f"- ROLLOUT={rollout}, run by run: endpoint p99 {p99s} ms; app RSS {rss} MiB")
    L.append("")
    return L


# ----------------------------------------------------------------------------- d. pipeline


def pipeline_line(a, d) -> list[str]:
    """Criterion's mean and ops/s, and saturation over the socket ÷ in-process."""
    L = []
    w = L.append
    w("## d. In-process pipeline (criterion, one core)")
    w("")
    w(f"`taskset -c 0 cargo bench --bench pipeline -- 'pipeline/'` ({d['profile']}): `{d['bench']}` mean "
      f"{d['mean_ns'] / 1000:.1f} µs (95 % CI {d['ci_ns'][0] / 1000:.1f}–{d['ci_ns'][1] / 1000:.1f}) → "
      f"**{d['ops_per_s']:,.0f} ops/s**")
    if a:
        w(f"- saturation over the Unix socket ÷ in-process: {a['sat']['unix']['rps_200']:,.0f} / "
          f"{d['ops_per_s']:,.0f} = **{a['sat']['unix']['rps_200'] / d['ops_per_s']:.2f}**")
    w("")
    return L


# ----------------------------------------------------------------------------- targets


def targets(a, b, c, d) -> list[tuple[str, str, bool | None]]:
    """(target, figure, met?) for every target the sections that ran can judge."""
    T = []
    if a and d:
        ratio = a["sat"]["unix"]["rps_200"] / d["ops_per_s"]
        T.append(("saturation ≥ 0.85 × in-process (4 KB, socket, 1 core)", f"{ratio:.2f} ×", ratio >= 0.85))
    if a:
        half = a["rates"]["unix"][1]
        T.append(("p99 ≤ 1 ms at 50 % of saturation (socket)", f"{ms(half['lat']['p99'])} ms", half["lat"]["p99"] <= 0.001))
        T.append(("p99.9 ≤ 2 ms at 50 % of saturation (socket)", f"{ms(half['lat']['p99.9'])} ms", half["lat"]["p99.9"] <= 0.002))
    if b:
        v = b["reject"]["lat_by_status"].get("429")
        T.append(("a 429 answered in ≤ 50 µs (p50, 1-slot queue)", f"{us(v['p50']) if v else '–'} µs", (v["p50"] <= 50e-6) if v else None))
        sc = b.get("single")
        v1 = sc["busy_norm"]["lat_by_status"].get("429") if sc else None
        if v1:
            lv = sc["busy_livez"]["lat_by_status"].get("200")
            T.append((f"… p50 for one caller at {sc['rate']}/s during the flood",
                      f"{us(v1['p50'])} µs (`/livez` then: {us(lv['p50']) if lv else '–'} µs)", v1["p50"] <= 50e-6))
        o = b["overload"]["lat_uncorrected_by_status"].get("429")
        if o:
            T.append(("… p50 of the 429s under the 10× overload", f"{us(o['p50'])} µs", o["p50"] <= 50e-6))
    if a:
        T.append(("idle RSS ≤ 8 MB", f"{a['idle_rss'] / 1e6:.1f} MB", a["idle_rss"] <= 8e6))
    if b:
        o64 = b.get("overload64k")
        if o64:
            ok64 = only_answers(o64)
            T.append(("… the same with 64 KB bodies", "yes" if ok64 else f"no: {sum(o64['errors'].values())} connection errors", ok64))
        pk = b["overload"]["peak_rss"]
        T.append(("peak RSS under 10× overload ≤ 48 MB", f"{pk / 1e6:.1f} MB", pk <= 48e6))
        ok_statuses = only_answers(b["overload"])
        T.append(("every overload response is 200/429/503/504, no connection error", "yes" if ok_statuses else "no", ok_statuses))
    if a:
        med = statistics.median(a["cold_start_ms"])
        T.append(("cold start to ready ≤ 20 ms", f"{med:.1f} ms", med <= 20))
    for wl, r0, r1 in compared_workloads(c):
        at = f"{wl['set']} at {wl['rate']}/s"
        T.append((f"demo app ({at}): lower app RSS at 100 % than at 0 %", f"{mib(r1['app_rss'])} vs {mib(r0['app_rss'])} MiB", r1["app_rss"] < r0["app_rss"]))
        T.append((f"demo app ({at}): lower endpoint p99 at 100 % than at 0 %", f"{r1['stats']['latency']['p99']:.2f} vs {r0['stats']['latency']['p99']:.2f} ms", r1["stats"]["latency"]["p99"] < r0["stats"]["latency"]["p99"]))
    return T


def targets_table(ctx, T) -> list[str]:
    """The targets with their figures and verdicts (none in a smoke run)."""
    L = ["## Targets", "", "| target | figure | verdict |", "| --- | --- | --- |"]
    for t, f, ok in T:
        L.append(f"| {t} | {f} | {verdict(None if ctx.smoke else ok)} |")
    if ctx.smoke:
        L += ["", "Smoke run: verdicts are not judged."]
    L.append("")
    return L


def how_to_read() -> list[str]:
    return [
        "## How to read this",
        "",
        "- *200/s* counts only 200s. *busy* is the whole machine's CPU (cores) during the step: with "
        "normd (≤ 1 core) and the generator (≤ 1 core) alone it is their sum; more means other "
        "processes competed and the step's figures are pessimistic.",
        "- Open-loop latency is measured from when each request was *scheduled* (oha "
        "`--latency-correction`), so a stall is charged to every request that should have been sent "
        "during it (no coordinated omission). Percentiles are exact, from oha's per-request records.",
        "- Raw data: `raw/*.oha.json` (oha's own summary of every step), `raw/app*-stats.json` "
        "(the demo app's `/stats`), `raw/criterion-*`, and `results.json` (every figure in this report).",
        "",
    ]
