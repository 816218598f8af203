"""Figures from recorded runs (the ``to_json`` dicts of harness.Run)."""

from __future__ import annotations

import statistics


def counted(run: dict) -> bool:
    """Whether a run is in the figures: it succeeded, and no download of it was retried.

    A retried download waited out a stalled connection (pip: 15 s a read) or
    a failing DNS lookup, on either side alike: such a run measures the
    network more than the build. Such runs are listed in the report and kept
    in runs.json; ``Context.alternate`` runs more pairs so that each side
    still has its ``reps`` counted runs.
    """
    return run["rc"] == 0 and not run.get("retries")


def stats(runs: list[dict]) -> dict | None:
    """median, min, max wall seconds of the counted runs; n of them, how many failed, and how many succeeded
    but were set aside for network retries. None if none counts."""
    ok = [r["wall"] for r in runs if counted(r)]
    if not ok:
        return None
    failed = sum(r["rc"] != 0 for r in runs)
    return {"median": statistics.median(ok), "min": min(ok), "max": max(ok), "n": len(ok),
            "failed": failed, "retried": len(runs) - len(ok) - failed}


def peak_mb(runs: list[dict]) -> float | None:
    rss = [r["rss_kb"] for r in runs if r.get("rss_kb")]
    return max(rss) / 1024 if rss else None


def ratio(sc: dict) -> float | None:
    """A side-by-side scenario's figure: median mbuild / median bake."""
    b, m = stats(sc["bake"]), stats(sc["mbuild"])
    return m["median"] / b["median"] if b and m else None


def pairwise(sc: dict) -> list[float]:
    """mbuild / bake of each alternating pair where both runs count."""
    return [m["wall"] / b["wall"] for b, m in zip(sc["bake"], sc["mbuild"]) if counted(b) and counted(m)]


def fmt(s: dict | None) -> str:
    """``median (min–max)``, flagged when runs failed."""
    if s is None:
        return "failed"
    f = f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"
    f += f" **{s['failed']} failed**" if s["failed"] else ""
    return f + (f", {s['retried']} set aside (network retries)" if s.get("retried") else "")


def summary(runs: list[dict]) -> str:
    """One line for the log."""
    s = stats(runs)
    if not s:
        return "all failed"
    mb = peak_mb(runs)
    return f"median {s['median']:.2f}s ({s['min']:.2f}–{s['max']:.2f})" + (f", peak {mb:.0f} MB" if mb else "")
