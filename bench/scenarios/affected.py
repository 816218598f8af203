"""CI: build what a commit affects, against bake building everything."""

from __future__ import annotations

import os
import subprocess
import time

import commands
from scenarios.base import Context, Result, Scenario
from scenarios.warm import INCREMENTAL
from settings import BAKE_FILE, PROJECT_TAGS, ROOT

CHANGED = "apps/api/api/server.py"


class Affected(Scenario):
    name = "affected"
    title = "CI: `--affected --since HEAD~1 //...` vs bake all"
    max_ratio = INCREMENTAL
    target = f"CI affected build: ≤ {INCREMENTAL}"
    notes = ("In a `git worktree add --detach` of HEAD (removed afterwards; no ref of the repository moves). "
             f"Before every run a commit appending a line to {CHANGED} is made there; mbuild: "
             "`build --affected --since HEAD~1 //...` (warm cache); bake: both targets (it has no affected "
             "analysis), context = the worktree.")

    def measure(self, ctx: Context, res: Result) -> None:
        ctx.warm_up()
        wt = ctx.h.tmp / "worktree"
        ctx.h.must(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), "HEAD"], name="worktree")
        git = ["git", "-C", str(wt), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        counter = [0]

        def commit() -> None:
            counter[0] += 1
            f = wt / CHANGED
            # unique across runs, or BuildKit answers from an earlier run's cache
            f.write_text(f.read_text() + f"# bench affected {os.getpid()}-{time.time_ns()}-{counter[0]}\n")
            subprocess.run([*git, "commit", "-q", "--no-verify", "-am", f"bench {counter[0]}"], check=True)

        env = {"CONTEXT": str(wt)}  # docker-bake.hcl's build context
        affected = commands.mbuild(ctx.cache, "build", "--progress", "plain", "--affected", "--since", "HEAD~1",
                                   "//...")
        try:
            commit()
            ctx.h.must(commands.bake(bake_file=BAKE_FILE), cwd=wt, env=env, name="aff-warm-bake")
            ctx.h.must(affected, cwd=wt, name="aff-warm-mbuild")

            def b(i):
                commit()
                return ctx.bake(name="aff-bake", env=env, cwd=wt, bake_file=BAKE_FILE)

            def m(i):
                commit()
                r = ctx.h.run(affected, cwd=wt, name="aff-mbuild")
                ctx.images.note(PROJECT_TAGS)
                return r
            ctx.alternate(res, b, m)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
