"""Scenarios on the shared engine with both sides warm: nothing changed, or one line."""

from __future__ import annotations

import commands
from scenarios.base import Context, Result, Scenario

INCREMENTAL = 0.8  # the target for every incremental scenario: mbuild at most 0.8 of bake's time


class NoOp(Scenario):
    name = "noop"
    title = "no-op (nothing changed)"
    max_ratio = 0.1
    target = "no-op ≥ 10× faster than bake"
    notes = "One untimed build of each side first; nothing changes between runs."

    def measure(self, ctx: Context, res: Result) -> None:
        ctx.warm_up()
        ctx.alternate(res, lambda i: ctx.bake(name="noop-bake"), lambda i: ctx.mbuild(name="noop-mbuild"))

    def profile(self, ctx: Context) -> None:
        args = commands.mbuild_build(ctx.cache)[1:]
        ctx.mbuild(name="noop-before-profile")  # the no-op stamp is this command's
        ctx.profile("noop", args)  # `mbuild`: the no-op fast path answers
        ctx.profile("noop-cli", args, module="mbuild.cli")  # the full CLI: what any change goes through


class Edit(Scenario):
    """Before every run (either side) a new unique comment line is appended to one file."""

    max_ratio = INCREMENTAL

    def __init__(self, name: str, title: str, path: str, comment: str) -> None:
        self.name, self.title, self.path, self.comment = name, title, path, comment
        self.target = f"{title}: ≤ {INCREMENTAL}"
        self.notes = (f"Before every run (either side) a new unique line `{comment} bench …` is appended to "
                      f"`{path}`, so each run sees a change since its own last build; restored afterwards.")

    def measure(self, ctx: Context, res: Result) -> None:
        ctx.warm_up()
        try:
            def b(i):
                ctx.edits.append(self.path, self.comment, self.name)
                return ctx.bake(name=f"{self.name}-bake")

            def m(i):
                ctx.edits.append(self.path, self.comment, self.name)
                return ctx.mbuild(name=f"{self.name}-mbuild")
            ctx.alternate(res, b, m)
        finally:
            ctx.edits.restore()

    def profile(self, ctx: Context) -> None:
        try:
            ctx.edits.append(self.path, self.comment, self.name)
            ctx.profile(self.name, commands.mbuild_build(ctx.cache)[1:])
        finally:
            ctx.edits.restore()
