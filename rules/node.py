"""Node images in three stages: pnpm dependencies, a build, a slim runtime.

Mirrors the seed's ``node.Dockerfile``: pnpm comes from Corepack, pinned;
``pnpm install --frozen-lockfile`` fails when ``pnpm-lock.yaml`` is out of
date; the builder adds only the named sources (never the whole tree, so
``.env`` cannot leak); the runtime copies only the built outputs, owned by
the runtime user as they are copied (no chown layer afterwards).
"""

from __future__ import annotations

from mbuild.api import v1 as mb


def _pnpm_install(ctx):
    workdir = ctx.attr("workdir")
    version = ctx.attr("pnpm_version")
    spec = f"pnpm@{version}" + (f"+{ctx.attr('pnpm_hash')}" if ctx.attr("pnpm_hash") else "")
    st = ctx.base("base")
    st = (
        st.with_env("COREPACK_HOME", "/opt/corepack")
        .with_env("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0")
        .with_env("npm_config_update_notifier", "false")
    )
    st = st.run(
        # Downloads through proxies do reset now and then: try three times.
        # Each attempt is marked on the stream it writes to, so a failed one
        # is one line of the build's output and its trace stays in the build
        # log (mbuild/ui/progress.py).
        ["/bin/sh", "-c", f"corepack enable && for i in 1 2 3; do echo \"mbuild: attempt $i of 3\"; "
                          f"corepack prepare {spec} --activate && exit 0; sleep 2; done >&2; exit 1"],
        **ctx.fetching(),
        name=f"[{ctx.label}] corepack: pnpm {version}",
    ).root()
    st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    st = ctx.copy_sources(st, ctx.attr("manifests"), workdir)
    st = st.run(
        ["/bin/sh", "-c", "pnpm install --frozen-lockfile --store-dir /pnpm/store"],
        **ctx.fetching(mb.cache("/pnpm/store", id="pnpm-store")),
        name=f"[{ctx.label}] pnpm install --frozen-lockfile",
    ).root()
    return [mb.Stage(st)]


pnpm_install = mb.rule(
    implementation=_pnpm_install,
    doc="A stage with a pnpm workspace's dependencies installed from its lockfile.",
    attrs={
        "base": mb.attr.base_image("Node base image name from WORKSPACE.toml `[images]`.", mandatory=True),
        "manifests": mb.attr.label_list("Filegroups with `package.json` files, `pnpm-lock.yaml` and "
                                        "`pnpm-workspace.yaml`, at their workspace paths.", mandatory=True,
                                        providers=(mb.Files,)),
        "pnpm_version": mb.attr.string("pnpm version Corepack activates, pinned.", default="10.28.1"),
        "pnpm_hash": mb.attr.string("Hash Corepack checks the pnpm download against (`sha512.<hex>`), for "
                                    "registries whose metadata lacks signatures."),
        "workdir": mb.attr.string("Workspace folder in the image.", default="/app"),
    },
)


# Node's compile cache (V8 code caching of the tools' own JavaScript, e.g. the
# 9 MB typescript.js that tsc loads on every run), kept in a cache mount. It
# caches how Node compiles the compiler, not anything the compiler produces,
# so the output is the same with or without it; the step's key stays its
# inputs. Never part of the image.
NODE_COMPILE_CACHE = "/root/.cache/node-compile-cache"

# `script`: a package.json script run as `pnpm run` runs it, without starting
# pnpm (a 9 MB bundle: ~0.3 s of every build here, against ~0.03 s for this).
# Read in the step from the package.json being built (an input of the step,
# so of its key): `pre<name>`, `<name>`, `post<name>` in turn, each with
# `/bin/sh -c`, the package's and every enclosing folder's node_modules/.bin
# first on PATH, and the npm_* variables scripts read; the first that fails
# ends the step with its exit code.
PACKAGE_SCRIPT_RUNNER = r"""
const fs = require("fs"), path = require("path"), { spawnSync } = require("child_process");
const name = process.argv[1], dir = process.cwd();
const pkg = JSON.parse(fs.readFileSync("package.json", "utf8")), scripts = pkg.scripts || {};
if (!(name in scripts)) {
  console.error(`${path.join(dir, "package.json")} has no script "${name}"; add it or fix the target's script`);
  process.exit(1);
}
const bins = [];
for (let d = dir; ; d = path.dirname(d)) {
  bins.push(path.join(d, "node_modules", ".bin"));
  if (d === path.dirname(d)) break;
}
const base = { ...process.env, PATH: [...bins, process.env.PATH || ""].join(":"), INIT_CWD: dir,
  npm_package_name: pkg.name || "", npm_package_version: pkg.version || "",
  npm_package_json: path.join(dir, "package.json") };
for (const event of ["pre" + name, name, "post" + name]) {
  if (!(event in scripts)) continue;
  console.log(`> ${pkg.name || ""}@${pkg.version || ""} ${event} ${dir}\n> ${scripts[event]}\n`);
  const env = { ...base, npm_lifecycle_event: event, npm_lifecycle_script: scripts[event] };
  const run = spawnSync("/bin/sh", ["-c", scripts[event]], { stdio: "inherit", env });
  if (run.error) { console.error(`${event}: ${run.error.message}`); process.exit(1); }
  if (run.status !== 0) process.exit(run.status === null ? 1 : run.status);
}
"""


def _node_build(ctx):
    command, script, package = ctx.attr("command"), ctx.attr("script"), ctx.attr("package")
    if bool(command) == bool(script):
        raise ctx.error("node_build needs exactly one of command (a command line) or script (a package.json "
                        "script, with package)")
    if script and not package:
        raise ctx.error(f"package: name the workspace folder holding the package.json whose script {script!r} "
                        f"runs, e.g. package = \"apps/web\"")
    if command and package:
        raise ctx.error("package goes with script; with command, cd in the command instead")
    st = ctx.stage(ctx.attr("deps"))
    workdir = st.get_workdir() or "/"
    st = ctx.copy_sources(st, ctx.attr("srcs"), workdir)
    run_as = dict(env={"NODE_COMPILE_CACHE": NODE_COMPILE_CACHE},
                  mounts=[mb.cache(NODE_COMPILE_CACHE, id="node-compile-cache")])
    if script:
        st = st.run(["node", "-e", PACKAGE_SCRIPT_RUNNER, script], cwd=f"{workdir.rstrip('/')}/{package}",
                    name=f"[{ctx.label}] {package}: run {script}", **run_as).root()
    else:
        st = st.run(list(command), name=f"[{ctx.label}] {' '.join(command)}", **run_as).root()
    return [mb.Stage(st)]


node_build = mb.rule(
    implementation=_node_build,
    doc="A build stage: sources added to a `pnpm_install` stage, then a package.json script (or a command) run.",
    attrs={
        "deps": mb.attr.label("The `pnpm_install` stage to build on.", mandatory=True, providers=(mb.Stage,)),
        "srcs": mb.attr.label_list("Filegroups copied at their workspace paths (only these: never the whole "
                                   "tree).", mandatory=True, providers=(mb.Files,)),
        "script": mb.attr.string("The package.json script to run (e.g. `build`), as `pnpm run` would: pre/post "
                                 "scripts, node_modules/.bin on PATH, npm_* variables; without pnpm's start-up. "
                                 "With `package`; instead of `command`."),
        "package": mb.attr.string("Workspace folder of the package whose `script` runs (e.g. `apps/web`); the "
                                  "script runs there.", check=mb.checks.workspace_path),
        "command": mb.attr.string_list("A build command (exec form), run in the stage's workdir; instead of "
                                       "`script`."),
    },
)


def _node_image(ctx):
    workdir = ctx.attr("workdir")
    user = ctx.attr("user")
    builder = ctx.stage(ctx.attr("builder"))
    from_dir = (builder.get_workdir() or workdir).rstrip("/")
    st = ctx.base("base")
    st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    for path in ctx.attr("outputs"):
        st = st.copy(builder, f"{from_dir}/{path}", f"{workdir.rstrip('/')}/{path}", owner=f"{user}:{user}")
    return mb.image_result(ctx, st, user)


node_image = mb.rule(
    implementation=_node_image,
    doc="A runtime image holding only a `node_build` stage's outputs, owned by a non-root user.",
    attrs={
        "base": mb.attr.base_image("Runtime base image name from WORKSPACE.toml `[images]`.", mandatory=True),
        "builder": mb.attr.label("The `node_build` stage whose outputs are copied.", mandatory=True,
                                 providers=(mb.Stage,)),
        "outputs": mb.attr.string_list("Paths relative to the builder's workdir, copied to the same paths "
                                       "under `workdir`.", mandatory=True),
        "user": mb.attr.string("Runtime user; it owns the copied files (the base's built-in `node`, uid/gid "
                               "1000).", default="node"),
        "workdir": mb.attr.string("Working directory.", default="/app"),
        **mb.image_attrs(),
    },
)
