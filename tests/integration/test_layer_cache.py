"""BuildKit's layer cache through the local registry: after the engine loses
the records of a build (pruned by a filter matching only this test's own
records: the engine's cache is shared), a rebuild imports its layers from
the registry cache instead of running the steps again."""

from __future__ import annotations

import hashlib
import json

import pytest

from ..conftest import REGISTRY
from .workspaces import make_workspace, remove_workspace_images

pytestmark = [pytest.mark.engine, pytest.mark.servers]


@pytest.mark.parametrize("kind", ["registry", "local"])
def test_layer_cache_survives_a_pruned_engine(tmp_path, docker_sdk, run_id, buildkit, kind):
    suffix = f"lc{kind[0]}{run_id}{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:6]}"
    ws = make_workspace(tmp_path / "ws", tmp_path / "cache", suffix)
    if kind == "registry":
        ref = f"{REGISTRY}/mbuild-test/layer-cache-{suffix}:{{target}}"
        export, load = f'ref = "{ref}"\nmode = "max"', f'ref = "{ref}"'
    else:  # a directory in OCI layout, relative to the workspace
        export, load = 'dest = "layer-cache/{target}"\nmode = "max"', 'src = "layer-cache/{target}"'
    with (ws.root / "WORKSPACE.toml").open("a") as f:
        f.write(f'\n[[cache.buildkit.export]]\ntype = "{kind}"\n{export}\n'
                f'\n[[cache.buildkit.import]]\ntype = "{kind}"\n{load}\n')
    try:
        first = ws.build_json("//images:app")["//images:app"]
        if kind == "local":
            assert (ws.root / "layer-cache" / "images-app" / "index.json").exists()
        first_layers = docker_sdk.images.get(ws.names["app"]).attrs["RootFS"]["Layers"]
        ours = f'description~="{suffix}"'  # only this test's own records
        records = buildkit.disk_usage([ours])
        assert records, "the test's own step was not found in the engine's cache"
        for record in records:  # BuildKit's prune cannot filter by description: go by id
            buildkit.prune([f"id=={record.ID}"])
        assert not buildkit.disk_usage([ours])
        proc = ws.mbuild("--cache-dir", str(tmp_path / "fresh"), "build", "--json", "--progress", "plain",
                         "//images:app")
        step = [line for line in proc.stderr.splitlines() if suffix in line or "CACHED" in line]
        assert any("CACHED" in line for line in step)
        again = json.loads(proc.stdout.splitlines()[0])
        assert again["source"] == "solve"
        assert again["cached"], step  # every step answered from cache: the registry's
        # The same file system, layer by layer (uncompressed digests); the
        # blobs themselves may be compressed anew.
        assert docker_sdk.images.get(ws.names["app"]).attrs["RootFS"]["Layers"] == first_layers
        assert again["manifest_digest"] != "" and first["manifest_digest"]
    finally:
        remove_workspace_images(docker_sdk, ws)
