"""Secrets from files and environment variables: buildx's --secret syntax,
its defaults, the checks made when a solve starts, and the GetSecret answers."""

from __future__ import annotations

import grpc
import pytest

from buildkit.proto import secrets_pb2, secrets_pb2_grpc
from buildkit.secrets import MAX_SECRET_SIZE, SecretError, SecretSource, SecretsService, parse_secret_specs


@pytest.mark.parametrize("spec, want", [
    ("id=npmrc,src=/home/u/.npmrc", SecretSource("npmrc", file="/home/u/.npmrc")),
    ("id=npmrc,source=rel/path", SecretSource("npmrc", file="rel/path")),
    ("id=tok,env=GITHUB_TOKEN", SecretSource("tok", env="GITHUB_TOKEN")),
    ("type=env,id=tok", SecretSource("tok", env="tok")),
    ("type=env,id=tok,src=GITHUB_TOKEN", SecretSource("tok", env="GITHUB_TOKEN")),
    ("type=file,id=key", SecretSource("key", file="key")),
    ("id=x", SecretSource("x")),
    ('id=a,"src=/path/with,comma"', SecretSource("a", file="/path/with,comma")),
    ("ID=upper,SRC=/f", SecretSource("upper", file="/f")),
])
def test_buildx_secret_specs_parse(spec, want):
    assert SecretSource.parse(spec) == want


@pytest.mark.parametrize("spec, message", [
    ("src=/f", "has no id"),
    ("id=a,src", "is not key=value"),
    ("id=a,colour=red", "unknown key 'colour'"),
    ("id=a,type=vault", "type 'vault'"),
    ("id=a,src=/f,env=V", "not both"),
])
def test_bad_secret_specs_are_one_line_errors_naming_the_spec(spec, message):
    with pytest.raises(SecretError) as info:
        SecretSource.parse(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_id_alone_reads_its_variable_if_set_else_its_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "only_file").write_bytes(b"from the file")
    env = {"only_env": "from the env"}
    assert SecretSource("only_env").resolved(env) == SecretSource("only_env", env="only_env")
    assert SecretSource("only_env").read(env) == b"from the env"
    assert SecretSource("only_file").resolved(env) == SecretSource("only_file", file="only_file")
    assert SecretSource("only_file").read(env) == b"from the file"


def test_sources_are_checked_when_the_solve_starts(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_SIZE + 1))
    cases = [
        (SecretSource("a", env="NOT_SET_ANYWHERE"), "the environment variable NOT_SET_ANYWHERE is not set"),
        (SecretSource("b", file=str(tmp_path / "missing")), "cannot read"),
        (SecretSource("c", file=str(tmp_path)), "is not a file"),
        (SecretSource("d", file=str(big)), f"at most {MAX_SECRET_SIZE} bytes"),
    ]
    for source, message in cases:
        with pytest.raises(SecretError) as info:
            SecretsService({source.id: source}, environ={})
        assert message in str(info.value) and repr(source.id) in str(info.value)
    with pytest.raises(SecretError, match="filed under the id 'other'"):
        SecretsService({"other": SecretSource("a", env="X")}, environ={"X": "1"})


def test_specs_become_the_solve_mapping_and_an_id_twice_is_refused():
    got = parse_secret_specs(["id=a,env=A", "id=b,src=/b"])
    assert got == {"a": SecretSource("a", env="A"), "b": SecretSource("b", file="/b")}
    with pytest.raises(SecretError, match="given twice"):
        parse_secret_specs(["id=a,env=A", "id=a,src=/b"])


def test_get_secret_serves_files_and_variables_and_not_found_otherwise(serve, tmp_path):
    f = tmp_path / "token"
    f.write_bytes(b"file-bytes\n")
    environ = {"API_TOKEN": "env-value"}
    service = SecretsService({"f": SecretSource("f", file=str(f)), "e": SecretSource("e", env="API_TOKEN")},
                             environ=environ)
    stub = secrets_pb2_grpc.SecretsStub(serve(service))
    assert stub.GetSecret(secrets_pb2.GetSecretRequest(ID="f")).data == b"file-bytes\n"
    assert stub.GetSecret(secrets_pb2.GetSecretRequest(ID="e")).data == b"env-value"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetSecret(secrets_pb2.GetSecretRequest(ID="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
