"""Every request field, enumerated from the request classes, reaches the API through each
entrance: the client's keyword arguments, a job-file line and a command-line flag.

A field added to ``GenerateRequest`` or ``EditRequest`` shows up here without editing this file;
the sample value comes from its spec (a choice, an int, a JSON object, a string).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import attrs
import pytest

import xai_images
from xai_images import EditRequest, GenerateRequest
from xai_images._api._requests import FieldSpec, api_fields, field_spec
from xai_images._ui._cli import EXIT_OK, main
from xai_images.bulk import load_jobs
from xai_images.testing import FakeModel, FakeSettings, FakeXAIServer, sample_image

PROMPT = "a lighthouse"
# A JSON field the SDK does not model: it must travel through the mapping of extra fields.
EXTRA = {"storage_options": {"region": "test"}}


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """The fake also lists the model named by the samples below (it refuses unknown models)."""
    return {"models": (*FakeSettings().models, FakeModel("sample-text", {("medium", "1k"): 1}))}


CASES = [
    pytest.param(cls, f.name, id=f"{cls.kind}-{f.name}")
    for cls in (GenerateRequest, EditRequest)
    for f in api_fields(cls)
    if f.name != "prompt"
]


def spec_of(cls: type[Any], name: str) -> FieldSpec:
    return field_spec(attrs.fields_dict(cls)[name])


def sample(spec: FieldSpec) -> Any:
    """A valid value that differs from the server's default, made from the field's spec."""
    if spec.example is not None:
        return spec.example
    if spec.choices is not None:
        return spec.choices[1]
    if spec.cli_type is int:
        return 2
    if spec.role == "extra":
        return EXTRA
    return "sample-text"


def inputs(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for variant, path in enumerate(paths):
        path.write_bytes(sample_image("png", 512, variant))
    return paths


def base_kwargs(cls: type[Any], name: str, files: list[Path]) -> dict[str, Any]:
    """The other fields a request needs: an edit combines two inputs (so that any field,
    aspect_ratio included, is allowed) unless the field under test is the single input."""
    if cls is GenerateRequest:
        return {}
    spec = spec_of(cls, name)
    if spec.role == "input":
        return {}
    return {"images": list(files)}


def field_value(cls: type[Any], name: str, files: list[Path]) -> Any:
    spec = spec_of(cls, name)
    if spec.role == "input":
        return list(files) if spec.many else files[0]
    return sample(spec)


def assert_sent(cls: type[Any], name: str, value: Any, body: dict[str, Any]) -> None:
    spec = spec_of(cls, name)
    if spec.role == "extra":
        assert {k: body[k] for k in value} == value
    elif spec.role == "input":
        sent = body[name] if spec.many else [body[name]]
        assert len(sent) == (len(value) if spec.many else 1)
        assert all(obj["url"].startswith("data:image/png;base64,") for obj in sent)
    else:
        assert body[name] == value


def test_every_field_is_classified() -> None:
    """Each field reaches the API or is a bulk job's bookkeeping, and has a CLI entrance."""
    for cls in (GenerateRequest, EditRequest):
        kept = {f.name for f in attrs.fields(cls)} - {f.name for f in api_fields(cls)}
        assert kept <= {"id", "line", "base_dir"}, cls
        for f in api_fields(cls):
            spec = field_spec(f)
            assert spec.help, f.name
            assert spec.cli or (spec.role == "input" and spec.many), f.name


@pytest.mark.parametrize(("cls", "name"), CASES)
async def test_client_sends_the_field(
    fake_xai_server: FakeXAIServer,
    xai_client: xai_images.AsyncClient,
    tmp_path: Path,
    cls: type[Any],
    name: str,
) -> None:
    """client.images.generate/edit take the field as a keyword and put it in the body."""
    files = inputs(tmp_path)
    value = field_value(cls, name, files)
    kwargs = {**base_kwargs(cls, name, files), name: value}
    method = xai_client.images.edit if cls is EditRequest else xai_client.images.generate
    await method(PROMPT, **kwargs)
    [request] = fake_xai_server.ledger.api_requests()
    assert_sent(cls, name, value, request.body)


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_job_line_sets_the_field(tmp_path: Path, cls: type[Any], name: str) -> None:
    """A job-file line with the field becomes a request of the right kind holding it."""
    files = inputs(tmp_path)
    value = field_value(cls, name, files)
    line = {"prompt": PROMPT, **base_kwargs(cls, name, files), name: value}
    job_file = tmp_path / "jobs.jsonl"
    job_file.write_text(json.dumps(line, default=lambda p: p.name) + "\n")
    [request] = load_jobs(job_file, on_error="stop")
    assert isinstance(request, cls)
    spec = spec_of(cls, name)
    if spec.role == "input":
        names = [Path(str(v)).name for v in (value if spec.many else [value])]
        got = getattr(request, name)
        assert [Path(str(v)).name for v in (got if spec.many else [got])] == names
    else:
        assert getattr(request, name) == value


def cli_args(cls: type[Any], name: str, files: list[Path]) -> list[str]:
    """The command line that sets the field, from the fields' specs."""
    args = ["edit" if cls is EditRequest else "generate", PROMPT]
    by_name = attrs.fields_dict(EditRequest)
    flag_of = {n: field_spec(f).cli for n, f in by_name.items() if field_spec(f).cli}
    # The single-input flag is the one inputs come through; repeated, it fills the list field.
    [input_flag] = [flag_of[n][0] for n in flag_of if field_spec(by_name[n]).role == "input"]
    spec = spec_of(cls, name)
    if spec.role == "input":
        chosen = files if spec.many else files[:1]
        return args + [a for path in chosen for a in (input_flag, str(path))]
    if cls is EditRequest:
        args += [a for path in files for a in (input_flag, str(path))]
    value = sample(spec)
    text = json.dumps(value) if isinstance(value, dict) else str(value)
    return [*args, flag_of[name][0], text]


@pytest.mark.parametrize(("cls", "name"), CASES)
async def test_cli_flag_sends_the_field(
    fake_xai_server: FakeXAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cls: type[Any],
    name: str,
) -> None:
    """The command's flags, made from the fields, put each field in the request body."""
    monkeypatch.setenv("XAI_API_KEY", fake_xai_server.api_key)
    monkeypatch.setenv("XAI_BASE_URL", fake_xai_server.base_url)
    files = inputs(tmp_path)
    argv = [*cli_args(cls, name, files), "-o", str(tmp_path / "out")]
    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    assert await asyncio.to_thread(main, argv) == EXIT_OK
    [request] = fake_xai_server.ledger.api_requests()
    assert_sent(cls, name, field_value(cls, name, files), request.body)


def test_keyword_types_list_exactly_the_fields() -> None:
    """The typed keywords of generate/edit are the request fields sent to the API plus the two
    per-call options: a field added to a request class must be added there too."""
    from xai_images.types import EditFields, GenerateFields

    for cls, keywords in ((GenerateRequest, GenerateFields), (EditRequest, EditFields)):
        fields = {f.name for f in api_fields(cls)} - {"prompt"}
        assert set(keywords.__annotations__) == fields | {"timeout", "max_retries"}


@pytest.mark.parametrize("method", ["generate", "generate_deferred", "edit", "edit_deferred"])
async def test_an_unknown_keyword_is_refused_before_sending(
    fake_xai_server: FakeXAIServer, xai_client: xai_images.AsyncClient, method: str
) -> None:
    """A misspelt keyword names itself in a ValidationError and nothing is sent."""
    call = getattr(xai_client.images, method)
    given = {"image": "https://example.invalid/a.png"} if method.startswith("edit") else {}
    with pytest.raises(xai_images.ValidationError) as caught:
        await call(PROMPT, **given, qualty="high")
    assert caught.value.field == "qualty"
    assert "Fields" in caught.value.limit
    assert fake_xai_server.ledger.requests == []
