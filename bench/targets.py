"""The targets a report checks, each with a verdict: PASS, MISS, or n/a (not measured).

The issue's targets ("Ahead of bake in every scenario"), as it states them:

* every side-by-side scenario is the median of at least 5 alternating runs;
* every incremental scenario ≤ 0.8 (mbuild / bake of the medians), the one
  line in apps/web and the remote hit on a fresh engine included; no-op ≥ 10×
  faster than bake; cold ≤ 0.9 (each scenario declares its own bound,
  ``Scenario.max_ratio``);
* at 10,000 targets a one-file change rebuilds within 20% of the same at 100
  targets, and the no-op stays ≤ 0.1 s.

Standing targets of earlier work are checked too, so a regression shows.
"""

from __future__ import annotations

from stats import peak_mb, ratio, stats

MIN_REPS = 5
SCALE_SMALL, SCALE_LARGE = "100", "10000"
CHANGE_GROWTH = 1.2  # at 10,000 targets, within 20% of the same change at 100
SCALE_NOOP = 0.1  # seconds, at 10,000 targets


def _ratio_text(r: float) -> str:
    if r >= 1:
        return f"{r:.2f} = {(r - 1) * 100:.0f}% slower"
    return f"{r:.2f} = {1 / r:.{1 if r <= 0.1 else 2}f}× faster"


def _target(text: str, ok: bool | None, measured: str, group: str = "issue") -> dict:
    return {"target": text, "ok": ok, "measured": measured, "group": group}


def side_by_side(scenarios: list[dict]) -> list[dict]:
    out = []
    if scenarios:
        ns = [min((stats(sc[side]) or {"n": 0})["n"] for side in ("bake", "mbuild")) for sc in scenarios]
        worst = min(ns)
        out.append(_target(f"every scenario: median of ≥ {MIN_REPS} alternating runs", worst >= MIN_REPS,
                           f"fewest counted runs of a side: {worst}"))
    for sc in scenarios:
        if sc.get("max_ratio") is None:
            continue
        r = ratio(sc)
        if r is None:
            out.append(_target(sc["target"], False, "could not run" if sc.get("error") else "runs failed"))
        else:
            out.append(_target(sc["target"], r <= sc["max_ratio"], _ratio_text(r)))
    return out


def _median(row: dict | None) -> float | None:
    s = stats(row["runs"]) if row else None
    return s["median"] if s else None


def at_scale(scale: dict | None, quick: bool) -> list[dict]:
    if scale is None:
        return []
    sizes = scale["sizes"]
    small, large = sizes.get(SCALE_SMALL, {}).get("rows", {}), sizes.get(SCALE_LARGE, {}).get("rows", {})
    missing = "not measured" + (" (--quick: no 10,000 targets)" if quick else "")
    change = f"at 10,000 targets, a one-file change rebuilds within {CHANGE_GROWTH - 1:.0%} of the same at 100"
    a, b = _median(small.get("change")), _median(large.get("change"))
    if SCALE_LARGE not in sizes or "change" not in small or "change" not in large:
        out = [_target(change, None, missing)]
    elif a is None or b is None:
        out = [_target(change, False, "runs failed")]
    else:
        out = [_target(change, b <= a * CHANGE_GROWTH, f"10k {b:.2f} s, 100 {a:.2f} s ({b / a - 1:+.0%})")]
    noop = f"at 10,000 targets, the no-op ≤ {SCALE_NOOP} s"
    every, images = _median(large.get("noopall")), _median(large.get("noop50"))
    if SCALE_LARGE not in sizes:
        out.append(_target(noop, None, missing))
    elif every is None or images is None:
        out.append(_target(noop, False, "runs failed"))
    else:
        out.append(_target(noop, max(every, images) <= SCALE_NOOP,
                           f"`//top:all` {every:.3f} s, `//top:images` {images:.3f} s"))
    if SCALE_LARGE in sizes:
        s = _median(large.get("analysis"))
        out.append(_target("10k: loading + analysis ≤ 3 s", s is not None and s <= 3,
                           f"{s:.2f} s" if s is not None else "failed", "standing"))
        peaks = [p for row in large.values() if (p := peak_mb(row["runs"])) is not None]
        out.append(_target("10k: peak RSS ≤ 500 MB (any command)", bool(peaks) and max(peaks) <= 500,
                           f"{max(peaks):.0f} MB" if peaks else "not measured", "standing"))
    return out


def standing_noop(scenarios: list[dict]) -> list[dict]:
    for sc in scenarios:
        if sc["name"] == "noop":
            s = stats(sc["mbuild"])
            return [_target("no-op of //infra:compose ≤ 0.3 s", s is not None and s["median"] <= 0.3,
                            f"{s['median']:.3f} s" if s else "failed", "standing")]
    return []


def digest(dg: dict | None) -> list[dict]:
    if dg is None:
        return []
    w = stats(dg["warm"])
    return [_target(f"warm digest of {dg['files'] // 1000}k files ≤ 1.5 s", w is not None and w["median"] <= 1.5,
                    f"{w['median']:.2f} s" if w else "failed", "standing")]


def evaluate(data: dict) -> list[dict]:
    """Every target the run's data can judge, the issue's first."""
    scenarios = data.get("scenarios", [])
    found = (side_by_side(scenarios) + at_scale(data.get("scale"), data.get("quick", False))
             + standing_noop(scenarios) + digest(data.get("digest")))
    return [t for t in found if t["group"] == "issue"] + [t for t in found if t["group"] == "standing"]


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**MISS**")
