"""Where a run's files go, and the index of runs.

One folder a run, ``<results>/<date>-<shortcommit>/`` (a second run of the
same commit on the same day gets ``-2``, ``-3``…), holding:

* ``report.md``: the report (report.py);
* ``runs.json``: every run's wall time, exit code and peak RSS, the machine,
  the commit, the targets' verdicts;
* ``chart.png``: every scenario's ratio against the 1.0 and 0.8 lines (chart.py);
* ``profile-<name>.txt``: pyinstrument profiles (profiles.py).

``<results>/README.md`` indexes the runs found there and names the latest;
each run rewrites it.
"""

from __future__ import annotations

import json
from pathlib import Path

REPORT, RUNS, CHART = "report.md", "runs.json", "chart.png"
INDEX = "README.md"


def new_run_folder(results: Path, date: str, short_commit: str) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    base = f"{date}-{short_commit}"
    folder, n = results / base, 1
    while folder.exists():
        n += 1
        folder = results / f"{base}-{n}"
    folder.mkdir()
    return folder


def _summary(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / RUNS).read_text())
    except (OSError, ValueError):
        return None
    argv = data.get("argv", [])
    full = data.get("full", not data.get("quick") and "--only" not in argv)
    commit = data.get("commit") or data.get("machine", {}).get("commit", "?")
    judged = [t for t in data.get("targets", []) if t.get("group") == "issue" and t.get("ok") is not None]
    met = f"{sum(1 for t in judged if t['ok'])} of {len(judged)}" if judged else "—"
    if full:
        what = "full"
    else:
        what = "quick" if data.get("quick") else "partial"
        if data.get("selected"):
            what += ": " + ", ".join(data["selected"])
    return {"name": folder.name, "started": data.get("started") or folder.name[:10], "commit": commit[:7],
            "what": what, "reps": data.get("reps", "?"), "met": met,
            "took": f"{data.get('elapsed', 0) / 60:.0f} min"}


def write_index(results: Path) -> Path:
    runs = [s for f in sorted(results.iterdir()) if f.is_dir() and (s := _summary(f))]
    runs.sort(key=lambda s: s["started"], reverse=True)
    L = ["# Benchmark results\n",
         "One folder a run, `<date>-<commit>/`, written by `bench/run` from a clean commit "
         "(see [bench/README.md](../README.md)): `report.md` (the report: commit, machine, every table, "
         "the targets with their verdicts), `runs.json` (every run), `chart.png` (every scenario's ratio "
         "mbuild / bake against the 1.0 and 0.8 lines) and `profile-*.txt` (pyinstrument). Each run "
         "rewrites this index.\n"]
    if runs:
        latest = runs[0]
        L.append(f"**Latest run:** [{latest['name']}]({latest['name']}/{REPORT}) ({latest['what']}).")
        full = next((r for r in runs if r["what"] == "full"), None)
        if full and full is not latest:
            L.append(f"**Latest full run:** [{full['name']}]({full['name']}/{REPORT}).")
        L.append("")
        L.append("| run | commit | what ran | reps | issue targets met | took |\n|---|---|---|---|---|---|")
        for r in runs:
            L.append(f"| [{r['name']}]({r['name']}/{REPORT}) | `{r['commit']}` | {r['what']} | {r['reps']} | "
                     f"{r['met']} | {r['took']} |")
    else:
        L.append("No runs yet.")
    index = results / INDEX
    index.write_text("\n".join(L) + "\n")
    return index
