"""Figures from recorded runs (the ``to_json`` dicts of harness.Run)."""

from __future__ import annotations

import statistics


def stats(runs: list[dict]) -> dict | None:
    """median, min, max wall seconds of the successful runs; n of them and how many failed. None if none succeeded."""
    ok = [r["wall"] for r in runs if r["rc"] == 0]
    if not ok:
        return None
    return {"median": statistics.median(ok), "min": min(ok), "max": max(ok), "n": len(ok),
            "failed": len(runs) - len(ok)}


def peak_mb(runs: list[dict]) -> float | None:
    rss = [r["rss_kb"] for r in runs if r.get("rss_kb")]
    return max(rss) / 1024 if rss else None


def ratio(sc: dict) -> float | None:
    """A side-by-side scenario's figure: median mbuild / median bake."""
    b, m = stats(sc["bake"]), stats(sc["mbuild"])
    return m["median"] / b["median"] if b and m else None


def pairwise(sc: dict) -> list[float]:
    """mbuild / bake of each alternating pair where both succeeded."""
    return [m["wall"] / b["wall"] for b, m in zip(sc["bake"], sc["mbuild"]) if b["rc"] == 0 and m["rc"] == 0]


def fmt(s: dict | None) -> str:
    """``median (min–max)``, flagged when runs failed."""
    if s is None:
        return "failed"
    f = f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"
    return f + (f" **{s['failed']} failed**" if s["failed"] else "")


def summary(runs: list[dict]) -> str:
    """One line for the log."""
    s = stats(runs)
    if not s:
        return "all failed"
    mb = peak_mb(runs)
    return f"median {s['median']:.2f}s ({s['min']:.2f}–{s['max']:.2f})" + (f", peak {mb:.0f} MB" if mb else "")
