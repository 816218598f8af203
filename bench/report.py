"""The run's report (``report.md``) and chart, from the run's data (what runs.json holds)."""

from __future__ import annotations

import statistics
from pathlib import Path

import chart
from results import CHART, REPORT, RUNS
from stats import fmt, pairwise, peak_mb, ratio, stats
from targets import verdict

METHOD = (
    "Every figure is the wall-clock time of a whole process (seconds): median (min–max) over the successful "
    "runs whose downloads were never retried (a retried download waited out a stalled connection or a failing "
    "DNS lookup, and measured the network; such runs, on either side, are set aside and listed below, and "
    "more pairs are run, up to twice the reps, until each side has its reps of counted runs). Side by side, "
    "runs alternate bake, mbuild, bake, mbuild…; a scenario's ratio is median mbuild / "
    "median bake (pairwise: the median and range of the per-pair ratios). bake builds `bench/docker-bake.hcl` "
    "(both seed Dockerfiles, target `runtime`, loaded into the engine); mbuild builds `//infra:compose` (both "
    "images, loaded, plus the compose file). Cold and remote scenarios run each build on a fresh private engine "
    "(empty content store, snapshots and BuildKit cache, cache mounts included); the others on the shared "
    "engine, whose build cache is never pruned. mbuild runs with byte-code caching on "
    "(`PYTHONDONTWRITEBYTECODE` removed, `PYTHONPYCACHEPREFIX=bench/.venv/pycache`), as on a developer's "
    "machine, with its own `--cache-dir`s.")
SERVER_NOTE = {
    True: "mbuild ran with its warm server (`mbuild server start`, started untimed before the first scenario): "
          "each command forks a fresh process with the imports already done. Profiles run mbuild in-process.",
    False: "mbuild ran without its warm server (`--no-server`): every command pays its own imports.",
}


def _targets_table(ts: list[dict]) -> list[str]:
    L = ["| target | verdict | measured |", "|---|---|---|"]
    L += [f"| {t['target']} | {verdict(t['ok'])} | {t['measured']} |" for t in ts]
    return L + [""]


def _tree_changes(data: dict) -> list[str]:
    """Scenarios after which HEAD moved or tracked files were dirty: their figures may not be this commit's."""
    out = []
    for sc in data.get("scenarios", []):
        t = sc.get("tree") or {}
        if t and (t.get("commit") != data["commit"] or t.get("dirty")):
            out.append(f"after {sc['name']}: HEAD {t.get('commit', '?')[:7]}, dirty: {', '.join(t.get('dirty', [])) or 'none'}")
    end = data.get("tree_end") or {}
    if end and (end.get("commit") != data["commit"] or end.get("dirty")):
        out.append(f"at the end: HEAD {end.get('commit', '?')[:7]}, dirty: {', '.join(end.get('dirty', [])) or 'none'}")
    return out


def _side_by_side(data: dict) -> list[str]:
    scs = data["scenarios"]
    L = ["## Side by side with `docker buildx bake`\n", METHOD + "\n", SERVER_NOTE[data.get("server", False)] + "\n",
         "| # | scenario | bake s | mbuild s | ratio | pairwise: median (min–max) | target |",
         "|---|---|---|---|---|---|---|"]
    for i, sc in enumerate(scs, 1):
        r = ratio(sc)
        pr = pairwise(sc)
        pair = f"{statistics.median(pr):.2f} ({min(pr):.2f}–{max(pr):.2f})" if pr else "—"
        target = f"≤ {sc['max_ratio']}" if sc.get("max_ratio") is not None else "none"
        L.append(f"| {i} | {sc['title']} | {fmt(stats(sc['bake']))} | {fmt(stats(sc['mbuild']))} | "
                 f"{f'{r:.2f}' if r is not None else '—'} | {pair} | {target} |")
    L.append("")
    for i, sc in enumerate(scs, 1):
        notes = " ".join(sc["notes"]) + (f" **Could not run:** `{sc['error']}`" if sc.get("error") else "")
        if notes:
            L.append(f"- **{i}. {sc['title']}**: {notes}")
    fails = [(sc["name"], side, r) for sc in scs for side in ("bake", "mbuild") for r in sc[side]
             if r["rc"] != 0 or r["note"]]
    if fails:
        L.append("\nFailed or flagged runs:\n")
        L += [f"- {n} / {side}: rc {r['rc']} after {r['wall']:.1f}s: `{r['note'][:300]}`" for n, side, r in fails]
    return L + [""]


def _scale(sc: dict) -> list[str]:
    sizes = list(sc["sizes"])
    if not sizes:
        return []
    L = ["## At scale (synthetic workspaces, `bench/genworkspace.py`)\n"]
    meta = "; ".join(f"{int(n):,} targets: {m['packages']} packages, {m['images']} images, {m['filegroups']} "
                     f"filegroups, {m['edges']} edges" for n in sizes for m in [sc["sizes"][n]["meta"]])
    L.append(f"Workspaces: {meta}. Time: median (min–max) s; peak RSS: the largest of the runs (of the process that ran the command: with the warm server, the server's child, as `MBUILD_SERVER_RUSAGE` reports it; the fast path's own process otherwise).\n")
    L.append("| measurement | " + " | ".join(f"{int(n):,} targets: s | peak MB" for n in sizes) + " |")
    L.append("|---|" + "---|---|" * len(sizes))
    keys = list(dict.fromkeys(k for n in sizes for k in sc["sizes"][n]["rows"]))
    for key in keys:
        title = next(sc["sizes"][n]["rows"][key]["title"] for n in sizes if key in sc["sizes"][n]["rows"])
        cells = []
        for n in sizes:
            row = sc["sizes"][n]["rows"].get(key)
            mb = peak_mb(row["runs"]) if row else None
            cells += [fmt(stats(row["runs"])) if row else "—", f"{mb:.0f}" if mb else "—"]
        L.append(f"| {title} | " + " | ".join(cells) + " |")
    firsts = []
    for n in sizes:
        f = sc["sizes"][n].get("first_build")
        if f:
            firsts.append(f"{int(n):,}: {f['wall']:.1f}s, rc {f['rc']}, {f.get('tries', 1)} tries"
                          + "".join(f"; failed try: rc {x['rc']} `{x['note'][:200]}`" for x in f.get("failures", []))
                          + ".")
    if firsts:
        L.append("\nFirst build of `//top:images` (before the no-op and change rows; up to 3 tries): " + " ".join(firsts))
    for n in sizes:
        pr = sc["sizes"][n].get("probe")
        if pr:
            L.append(f"\nProbe at {int(n):,}: build of the image whose copy step sends the most files "
                     f"(`{pr['label']}`, {pr['files']} files): rc {pr['rc']} in {pr['wall']:.1f}s"
                     + (f" — `{pr['note'][:300]}`" if pr["rc"] else "") + ".")
    return L + [""]


def _digest(dg: dict) -> list[str]:
    c, w = stats(dg["cold"]), stats(dg["warm"])
    mb = peak_mb(dg["cold"] + dg["warm"])
    return [f"## Digesting {dg['files']:,} source files\n",
            "`mbuild explain //:tree` of a filegroup globbing every file (explain computes the keys, so it "
            "digests every source). Cold: a new empty `--cache-dir` each run (no stat cache; the OS page cache is "
            "warm all the same). Warm: the same cache dir again (stat cache).\n",
            "| | s | peak MB |\n|---|---|---|",
            f"| cold | {fmt(c)} | {f'{mb:.0f}' if mb else '—'} |",
            f"| warm | {fmt(w)} | |\n"]


def write(data: dict, folder: Path) -> Path:
    """report.md (and chart.png when there are side-by-side scenarios) in the run's folder."""
    chart_name = None
    if data.get("scenarios"):
        rows = [(f"{i}. {sc['name']}", ratio(sc), sc.get("max_ratio")) for i, sc in enumerate(data["scenarios"], 1)]
        chart.ratio_chart(folder / CHART, rows, f"mbuild benchmarks {folder.name}, {data['reps']} reps")
        chart_name = CHART
    m = data["machine"]
    mode = "full" if data["full"] else ("quick (no 10,000-target measurements)" if data["quick"] else "partial")
    command = " ".join(["bench/run", *data["argv"]])
    interrupted = " **Interrupted**: only what was measured before." if data.get("interrupted") else ""
    L = [f"# mbuild benchmarks at `{data['commit'][:7]}` ({data['date']})\n",
         f"`{command}` — {data['reps']} reps per side, {mode}; took {data['elapsed'] / 60:.1f} min.{interrupted}\n",
         "| | |\n|---|---|",
         f"| commit | `{data['commit']}` {data['subject']} (no tracked file differed from it at the start) |",
         f"| uname -a | `{m['uname']}` |",
         f"| nproc / memory | {m['nproc']} / {m['memory']} |",
         f"| engine (`docker version`) | {m['engine']} |",
         f"| buildx | `{m['buildx']}` |",
         f"| python (mbuild) | {m['python']} |\n"]
    changes = _tree_changes(data)
    if changes:
        L.append("**Warning: the checkout changed during the run**, so some figures may not be this commit's: "
                 + "; ".join(changes) + ".\n")
    issue = [t for t in data["targets"] if t["group"] == "issue"]
    L.append("## Where it stands\n")
    if chart_name:
        L.append(f"![every scenario's ratio mbuild / bake against the 1.0 and 0.8 lines]({chart_name})\n")
    L += _targets_table(issue) if issue else ["No target was measured.\n"]
    if data.get("scenarios"):
        L += _side_by_side(data)
    if data.get("scale"):
        L += _scale(data["scale"])
    if data.get("digest"):
        L += _digest(data["digest"])
    standing = [t for t in data["targets"] if t["group"] == "standing"]
    if standing:
        L += ["## Standing targets of earlier work\n"] + _targets_table(standing)
    if data.get("profiles"):
        L.append("## Profiles\n")
        L.append("pyinstrument (bench/.venv) over `python -m mbuild …` (the command, no-op fast path included; "
                 "`*-cli`: `python -m mbuild.cli …`, the full CLI), each an untimed run after the timed ones; text "
                 "output. pyinstrument samples the main thread: the time of mbuild's job threads (solves, image "
                 "loads, remote restores) shows as `Executor.run` waiting.\n")
        L += [f"- {name}: [{f}]({f})" for name, f in data["profiles"].items()]
        L.append("")
    elif data.get("profile_note"):
        L.append(f"## Profiles\n\n{data['profile_note']}\n")
    L.append(f"Raw runs (every wall time, exit code, peak RSS): [{RUNS}]({RUNS}).\n")
    md = folder / REPORT
    md.write_text("\n".join(L))
    return md
