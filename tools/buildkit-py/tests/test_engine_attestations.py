"""Attestations in OCI exports: SLSA provenance (mode=max) of an LLB solve and
of a Dockerfile build, and an SBOM made by a generator image built here
(BuildKit's default generator comes from Docker Hub, out of reach here)."""

from __future__ import annotations

import textwrap

import pytest

from buildkit import exporters, llb
from buildkit.attestations import provenance, sbom
from buildkit.client import SolveRequest
from buildkit.dockerfile import solve_request

from bk_oci import OCIArchive
from bk_testenv import BASE_IMAGE

pytestmark = pytest.mark.engine

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SPDX = "https://spdx.dev/Document"

# A generator in BuildKit's scanner protocol: it reads the tree at
# $BUILDKIT_SCAN_SOURCE and writes in-toto statements to $BUILDKIT_SCAN_DESTINATION.
GENERATOR = textwrap.dedent("""\
    import json, os
    src, dst = os.environ["BUILDKIT_SCAN_SOURCE"], os.environ["BUILDKIT_SCAN_DESTINATION"]
    files = sorted(os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs)
    doc = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "buildkit-test-scan",
           "dataLicense": "CC0-1.0", "files": [{"fileName": f, "SPDXID": f"SPDXRef-File-{i}"}
                                               for i, f in enumerate(files)]}
    with open(os.path.join(dst, "scan.spdx.json"), "w") as out:
        json.dump({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document",
                   "predicate": doc}, out)
""")


def test_provenance_of_an_llb_solve_in_an_oci_export(buildkit, base_image_config, tmp_path):
    st = llb.image(BASE_IMAGE, config=base_image_config).run(
        "echo attested > /attested.txt", name="make the attested file").root()
    out = tmp_path / "attested.tar"
    buildkit.solve(SolveRequest(definition=st, exports=(exporters.oci_tarball(out, config=st.image_config()),),
                                frontend_attrs=provenance("max")))
    archive = OCIArchive(out)
    (image,) = archive.images()
    (subject, statement), = archive.attestations()
    manifest_digest = next(d["digest"] for d in archive.descriptors())
    assert subject == manifest_digest
    assert statement["predicateType"] == SLSA_V02
    predicate = statement["predicate"]
    assert predicate["buildType"] == "https://mobyproject.org/buildkit@v1"
    assert any(m["uri"].startswith("pkg:docker/" + BASE_IMAGE.split(":")[0]) for m in predicate["materials"])
    steps = predicate["buildConfig"]["llbDefinition"]  # mode=max: every step's definition
    assert any("echo attested" in str(s["op"]) for s in steps)
    assert archive.files(image)["attested.txt"] == b"attested\n"
    archive.close()


def test_provenance_of_a_dockerfile_build(buildkit, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY Dockerfile /src/Dockerfile\n")
    out = tmp_path / "df.tar"
    buildkit.solve(solve_request(ctx, attestations=provenance("max"), exports=(exporters.oci_tarball(out),)))
    archive = OCIArchive(out)
    (_, statement), = archive.attestations()
    invocation = statement["predicate"]["invocation"]
    assert statement["predicateType"] == SLSA_V02
    assert invocation["configSource"]["entryPoint"] == "Dockerfile"
    assert invocation["parameters"]["frontend"] == "dockerfile.v0"
    archive.close()


def test_sbom_from_a_local_generator_image(buildkit, base_image_config, image_names, tmp_path):
    generator = image_names("sbom-generator")
    gen = (llb.image(BASE_IMAGE, config=base_image_config).mkfile("/scan.py", GENERATOR)
           .with_cmd(["python3", "/scan.py"]))
    buildkit.solve(SolveRequest(definition=gen, exports=(exporters.load_into_docker(generator, gen.image_config()),)))
    app = llb.scratch().mkdir("/app").mkfile("/app/hello.txt", "hello\n").mkfile("/app/run.sh", "echo hi\n")
    out = tmp_path / "sbom.tar"
    buildkit.solve(SolveRequest(definition=app, exports=(exporters.oci_tarball(out, config=app.image_config()),),
                                frontend_attrs={**sbom(generator), **provenance("min")}))
    archive = OCIArchive(out)
    kinds = {s["predicateType"]: s for _, s in archive.attestations()}
    assert set(kinds) == {SPDX, SLSA_V02}
    files = {f["fileName"] for f in kinds[SPDX]["predicate"]["files"]}
    assert files == {"app/hello.txt", "app/run.sh"}
    archive.close()
