"""The one definition of a generate or edit request: its fields, their specs, its JSON body.

The rule of each field (limits, allowed values, the check) lives in ``_rules.py``.

Every entrance derives from the fields declared here: ``client.images.generate/edit`` build a
request object, the job-file parser (``_jobs.py``) reads job lines into one, the CLI makes its
flags from the fields' `FieldSpec` (help text, flag, type, choices), the manifest records
`GenerateRequest.to_json`. Adding an API field means adding it here (and to the keyword
signatures of ``_images.py``, kept explicit for editors and type checkers).

Construction never raises on a bad value, so that a bulk job can report a bad item as a failed
outcome; `GenerateRequest.check` (API fields) and `GenerateRequest.validate`
(also the job's ``id`` and local files) do, and `GenerateRequest.to_body` checks first.
Only the fields a caller set are sent: the live API rejects unknown or unsupported fields, and
server-side defaults change over time.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, ClassVar, Literal

import attrs

from .._errors import ValidationError
from ._inputs import FileId, ImageInput, check_input_scheme
from ._rules import (
    ASPECT_RATIOS,
    MAX_EDIT_IMAGES,
    MAX_N,
    MAX_PROMPT_CHARS,
    QUALITIES,
    RESOLUTIONS,
    RESPONSE_FORMATS,
    check_extra,
    check_id,
    check_images,
    check_n,
    check_output,
    check_prompt,
    check_storage_options,
    check_str,
    check_text,
    check_upload_urls,
    check_utf8,
    one_of,
    redact_output,
)

__all__ = [
    "ASPECT_RATIOS",
    "MAX_EDIT_IMAGES",
    "MAX_N",
    "MAX_PROMPT_CHARS",
    "QUALITIES",
    "RESOLUTIONS",
    "RESPONSE_FORMATS",
    "EditRequest",
    "FieldSpec",
    "GenerateRequest",
    "Request",
    "api_fields",
    "derive_id",
    "field_spec",
]

_SPEC = "xai_images"
# Stands in for edit inputs that are not resolved yet, so the other fields of an edit can be
# checked before any local file is read.
_PENDING_INPUT = {"url": "https://placeholder.invalid/image.png"}


@attrs.frozen
class FieldSpec:
    """What the SDK knows about one request field, beyond its type and default.

    Attributes:
        help: one line for people (CLI help, the request's docstring).
        check: raises ``ValidationError`` for a bad value (called only for values set).
        role: ``"body"`` sent as is; ``"extra"`` merged into the body last; ``"input"`` an edit
            input, resolved to an image object before sending; ``"job"`` bookkeeping of a bulk
            job, never sent.
        many: an input field holding a list of inputs (job lines give a list; the CLI sends a
            repeated input flag there when it repeats).
        cli: the command-line flags (``()``: none; a name without dashes is positional).
        cli_type: the value's type on the command line (``dict``: a JSON object).
        choices: the allowed values, offered by the CLI.
        metavar: the CLI's name for the value.
        gallery: shown on the gallery card of a finished item.
        example: a valid value, for help texts and tests (JSON-object fields).
    """

    help: str
    check: Callable[[str, Any], None] | None = None
    role: Literal["body", "extra", "input", "job"] = "body"
    many: bool = False
    cli: tuple[str, ...] = ()
    cli_type: type[Any] | Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    gallery: bool = False
    example: Any = None


def field_spec(field: attrs.Attribute[Any]) -> FieldSpec:
    """The `FieldSpec` of one of a request class's ``attrs.fields``."""
    spec = field.metadata[_SPEC]
    assert isinstance(spec, FieldSpec)
    return spec


def api_fields(cls: type[Any]) -> list[attrs.Attribute[Any]]:
    """The fields of ``cls`` that reach the API (all but a bulk job's bookkeeping)."""
    return [f for f, _spec in _api_specs(cls)]


_SPECS: dict[type[Any], tuple[tuple[attrs.Attribute[Any], FieldSpec], ...]] = {}


def _api_specs(cls: type[Any]) -> tuple[tuple[attrs.Attribute[Any], FieldSpec], ...]:
    # Read once per class: every request is checked and encoded with these (per call, reading
    # the field metadata again was ~40 dictionary look-ups).
    found = _SPECS.get(cls)
    if found is None:
        fields = attrs.fields(cls)
        found = _SPECS[cls] = tuple(
            (f, field_spec(f)) for f in fields if field_spec(f).role != "job"
        )
    return found


def _opt_tuple(value: Any) -> Any:
    # Lists become tuples (the request is frozen); a string or anything else is kept as given
    # so that the check can refuse it instead of splitting a path into characters.
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray, memoryview)):
        return tuple(value)
    return value


def _field(spec: FieldSpec, **kwargs: Any) -> Any:
    kwargs.setdefault("default", None)
    return attrs.field(kw_only=True, metadata={_SPEC: spec}, **kwargs)


def _choice(help: str, values: tuple[str, ...], flag: str, **spec: Any) -> Any:
    """A body field whose value is one of ``values``, offered as ``flag`` on the command line."""
    return _field(FieldSpec(help, one_of(values), cli=(flag,), choices=values, **spec))


def _json_object(
    help: str,
    check: Callable[[str, Any], None],
    flag: str,
    *,
    repr: Callable[[Any], str] | None = None,
    **spec: Any,
) -> Any:
    """A field holding a JSON object, given as JSON text to ``flag`` on the command line."""
    field = FieldSpec(help, check, cli=(flag,), cli_type=dict, metavar="JSON", **spec)
    return _field(field) if repr is None else _field(field, repr=repr)


# -- the requests --------------------------------------------------------------------------------


@attrs.frozen
class _Request:
    """The fields shared by both kinds of request, declared once."""

    prompt: str = attrs.field(
        metadata={
            _SPEC: FieldSpec(
                "what to draw or change, 1 to 10,000 characters", check_prompt, cli=("prompt",)
            )
        }
    )
    id: str | None = _field(
        FieldSpec(
            "a bulk job item's id: letters, digits, '.', '_', '-' (up to 100); its files are "
            "{id}-{index}.{ext}; derived from the request's content when unset",
            check_id,
            role="job",
        )
    )
    model: str | None = _field(
        FieldSpec(
            "any model name (not checked: new ones appear); the server's default when unset",
            check_text,
            cli=("--model",),
        )
    )
    n: int | None = _field(
        FieldSpec(f"images to make, 1 to {MAX_N}", check_n, cli=("-n",), cli_type=int)
    )
    quality: str | None = _choice("low, medium, high or auto", QUALITIES, "--quality", gallery=True)
    response_format: str | None = _choice(
        "url (temporary URLs; the API default) or b64_json (image bytes in the answer, "
        "decoded as they stream in)",
        RESPONSE_FORMATS,
        "--format",
    )
    aspect_ratio: str | None = _choice(
        "1:1, 16:9, ... or auto; for edits only when combining several images",
        ASPECT_RATIOS,
        "--aspect-ratio",
        metavar="RATIO",
        gallery=True,
    )
    resolution: str | None = _choice("1k, 1.5k or 2k", RESOLUTIONS, "--resolution", gallery=True)
    user: str | None = _field(
        FieldSpec("an end-user id for abuse monitoring", check_str, cli=("--user",))
    )
    output: Mapping[str, Any] | None = _json_object(
        'where xAI uploads the images: {"upload_urls": [one signed URL per image]} (PUT '
        "with Content-Type = the image's mime_type; url format only)",
        check_output,
        "--output-json",
        example={"upload_urls": ["https://uploads.example/sample-0?signature=s"]},
        repr=lambda value: repr(redact_output(value)),
    )
    storage_options: Mapping[str, Any] | None = _json_object(
        'keep the images in xAI\'s Files store: {"filename", "expires_after"?, '
        '"public_url"?: true or {"expires_after"}}; each image then has file_output',
        check_storage_options,
        "--storage-options",
        example={"filename": "sample.jpg", "expires_after": 86400},
    )
    extra_body: Mapping[str, Any] | None = _json_object(
        "extra fields sent as given and merged last (a key that collides with a field wins; "
        "not checked): for fields or values this SDK does not know yet",
        check_extra,
        "--extra-body",
        role="extra",
    )
    line: int | None = _field(
        FieldSpec("the line of the job file it came from (set by load_jobs)", role="job"),
        eq=False,
    )

    kind: ClassVar[str]

    def options(self) -> dict[str, Any]:
        """The API fields that are set, except ``prompt`` and edit inputs."""
        return {
            f.name: getattr(self, f.name)
            for f in api_fields(type(self))
            if f.name != "prompt"
            and field_spec(f).role != "input"
            and getattr(self, f.name) is not None
        }

    def to_json(self) -> dict[str, Any]:
        """The request as recorded in the manifest (and hashed for its id)."""
        return {"prompt": self.prompt, **_recorded(self.options())}

    def check(self, *, deferred: bool = False) -> None:
        """Check every API field, without reading or sending anything.

        Args:
            deferred: check it as a deferred request (URL format only).

        Raises:
            ValidationError: naming the field, the value and the rule.
        """
        for f, spec in _api_specs(type(self)):
            value = getattr(self, f.name)
            # A required field (the prompt) is checked even when None was passed for it.
            if spec.check is not None and (value is not None or f.default is attrs.NOTHING):
                spec.check(f.name, value)
        if self.output is not None and self.response_format == "b64_json":
            raise ValidationError(
                "response_format",
                self.response_format,
                '"url" (or unset) with output.upload_urls: xAI uploads URL-format images only',
            )
        if deferred and self.response_format == "b64_json":
            raise ValidationError(
                "response_format",
                self.response_format,
                '"url" (or unset) for a deferred request: the API only defers URLs',
            )

    def validate(self) -> None:
        """Check every field as a bulk job would (``id`` too, and that an edit's local input
        files exist), without sending anything.

        Raises:
            ValidationError: naming the field at fault.
        """
        if self.id is not None:
            check_id("id", self.id)
        self._check_inputs()
        self.check()

    def _check_inputs(self) -> None:
        """Check the inputs that are read from disk (none for a generate request)."""

    def _body(self, inputs: Mapping[str, Any], deferred: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for f, spec in _api_specs(type(self)):
            value = getattr(self, f.name)
            if value is not None and spec.role == "body":
                body[f.name] = value
        if deferred:
            body["deferred"] = True
        body.update(inputs)
        if self.extra_body is not None:
            # Merged last on purpose: a key that collides with a field wins, so callers can
            # send a value this SDK would reject (a new quality, say) without a release.
            body.update(self.extra_body)
        check_upload_urls(body)
        return body


@attrs.frozen
class GenerateRequest(_Request):
    """A text-to-image request (``client.images.generate``, a job line without inputs).

    Build it with keyword arguments; only the fields set are sent. Construction does not check
    values: `check` does, and so do `to_body` and every entrance that sends it.
    """

    kind: ClassVar[str] = "generate"

    def to_body(self, *, deferred: bool = False) -> dict[str, Any]:
        """Check the request and return its JSON body.

        Raises:
            ValidationError: naming the field, the value and the rule (e.g. ``n`` outside 1-10,
                an empty or over-long prompt, an unknown ``quality``, ``deferred`` with
                ``b64_json``, ``output.upload_urls`` not one per image).
        """
        self.check(deferred=deferred)
        return self._body({}, deferred)


@attrs.frozen
class EditRequest(_Request):
    """An edit of one image (``image=``) or a combination of up to 5 (``images=``), not both.

    Each input is a URL, a data URI, a local path, ``bytes``, a binary file object or a
    `FileId` (a bulk job refuses file objects: a resumable job must be able to read an
    input again). Refer to several inputs in the prompt as ``<IMAGE_0>``, ``<IMAGE_1>``, ...
    """

    image: ImageInput | None = _field(  # noqa: RUF009 (an attrs field with its spec)
        FieldSpec(
            "the input image: a URL, a data URI, a local path, bytes or a FileId",
            role="input",
            cli=("--image",),
            metavar="PATH_OR_URL",
        )
    )
    images: Sequence[ImageInput] | None = _field(
        FieldSpec(
            f"1 to {MAX_EDIT_IMAGES} input images to combine",
            check_images,
            role="input",
            many=True,
        ),
        converter=_opt_tuple,
    )
    base_dir: Path | None = _field(  # noqa: RUF009
        FieldSpec(
            "relative local paths resolve against it (load_jobs sets the job file's "
            "directory); None means the current directory",
            role="job",
        ),
        eq=False,
    )

    kind: ClassVar[str] = "edit"

    def to_json(self) -> dict[str, Any]:
        """The request as recorded in the manifest (inputs by reference, never their bytes)."""
        out: dict[str, Any] = {"prompt": self.prompt}
        if self.image is not None:
            out["image"] = _input_json(self.image)
        if self.images is not None:
            out["images"] = [_input_json(i) for i in self.images]
        out.update(_recorded(self.options()))
        return out

    def check(self, *, deferred: bool = False) -> None:
        """Check every API field and the shape of the inputs, without reading them.

        Raises:
            ValidationError: both or neither of ``image``/``images``, more than 5 images,
                an input URL of another scheme than http(s) or without a UTF-8 form,
                ``aspect_ratio`` with fewer than 2 images, or another bad field.
        """
        self._check_shape()
        for name, value in self._raw_inputs():
            if isinstance(value, str):
                check_input_scheme(name, value)
                if _is_remote(value):
                    # Sent as given; local paths are read (and may have non-UTF-8 names).
                    check_utf8(name, value)
        super().check(deferred=deferred)
        if self.aspect_ratio is not None and (self.images is None or len(self.images) < 2):
            raise ValidationError(
                "aspect_ratio",
                self.aspect_ratio,
                "used only when combining several images (images= with 2 or more); an edit of "
                "one image keeps its aspect ratio",
            )

    def _check_inputs(self) -> None:
        self._check_shape()
        for name, value in self._raw_inputs():
            self._check_local(name, value)

    def to_body(
        self, inputs: Sequence[Mapping[str, str]], *, deferred: bool = False
    ) -> dict[str, Any]:
        """Check the request and return its JSON body, with ``inputs`` (the image objects
        ``{"url": ...}`` or ``{"file_id": ...}`` the inputs resolved to, in order) in place of
        the inputs.

        Raises:
            ValidationError: naming the field, the value and the rule.
        """
        self.check(deferred=deferred)
        names = [name for name, _ in self._raw_inputs()]
        if len(inputs) != len(names):
            raise ValidationError("inputs", len(inputs), f"{len(names)} image objects")
        objects = [_image_object(name, obj) for name, obj in zip(names, inputs, strict=True)]
        placed: dict[str, Any] = (
            {"image": objects[0]} if self.image is not None else {"images": objects}
        )
        return self._body(placed, deferred)

    def check_body(self, *, deferred: bool = False) -> None:
        """Check the whole body with placeholder inputs, before any input is read.

        Raises:
            ValidationError: as `to_body`.
        """
        self.to_body([_PENDING_INPUT] * len(self._raw_inputs()), deferred=deferred)

    def named_inputs(self) -> list[tuple[str, ImageInput]]:
        """The inputs with the field names errors use (``image``, ``images[1]``, ...); relative
        local paths resolved against `base_dir`."""
        return [(name, self._resolved(value)) for name, value in self._raw_inputs()]

    def _raw_inputs(self) -> list[tuple[str, ImageInput]]:
        if self.image is not None:
            return [("image", self.image)]
        if not isinstance(self.images, tuple):
            return []
        return [(f"images[{i}]", value) for i, value in enumerate(self.images)]

    def _check_shape(self) -> None:
        if self.image is not None and self.images is not None:
            raise ValidationError(
                "images", "<image and images>", "given alone: pass image= or images="
            )
        if self.image is None and self.images is None:
            raise ValidationError(
                "image", None, "given: pass image= (one input) or images= (several)"
            )
        if self.images is not None:
            check_images("images", self.images)

    def resolve_path(self, value: str | os.PathLike[str]) -> Path:
        """A local input path, resolved against `base_dir` when relative."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def _resolved(self, value: ImageInput) -> ImageInput:
        if self.base_dir is None or _is_remote(value):
            return value
        if isinstance(value, (str, os.PathLike)):
            return self.resolve_path(value)
        return value

    def _check_local(self, name: str, value: object) -> None:
        if isinstance(value, str):
            check_input_scheme(name, value)
            # The input is recorded in the manifest and hashed into the item's id.
            check_utf8(name, value)
        if isinstance(value, (FileId, bytes)) or _is_remote(value):
            return
        if isinstance(value, (str, os.PathLike)):
            check_utf8(name, os.fspath(value))
            if "\x00" in os.fspath(value):
                raise ValidationError(name, str(value), "a local path without NUL characters")
            try:
                path = self.resolve_path(value)
                found = path.is_file()
            except (OSError, RuntimeError, ValueError) as exc:
                # A name too long, an unknown ~user, a NUL: the path cannot name a file.
                raise ValidationError(name, str(value), f"a usable local path ({exc})") from None
            if not found:
                raise ValidationError(name, str(value), f"an existing file (not found: {path})")
            return
        raise ValidationError(
            name, value, "a URL, a data URI, a local path, bytes or a FileId (no file objects)"
        )


Request = GenerateRequest | EditRequest
"""Either kind of request."""


def _document(cls: type[_Request]) -> None:
    # The fields are described once, in their FieldSpec; the docstring lists them from there.
    items = "".join(f"\n    {f.name}: {field_spec(f).help}." for f in attrs.fields(cls))
    cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n\nAttributes:" + items + "\n"


_document(GenerateRequest)
_document(EditRequest)


# -- helpers -------------------------------------------------------------------------------------


def _is_remote(value: object) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://", "data:"))


def _image_object(name: str, value: object) -> dict[str, str]:
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, item),) = value.items()
        if key in ("url", "file_id") and isinstance(item, str) and item:
            return {key: item}
    raise ValidationError(name, value, 'an image object: {"url": ...} or {"file_id": ...}')


def _recorded(options: Mapping[str, Any]) -> Any:
    """The options as the manifest keeps them: JSON values, signed URLs left out (their count
    stays, so a job resumed with fresh URLs keeps its item ids)."""
    if "output" in options:
        options = {**options, "output": redact_output(options["output"])}
    return _jsonable(options)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _input_json(value: object) -> Any:
    if isinstance(value, FileId):
        return {"file_id": value.id}
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, str) and value[:5].lower() == "data:":
        # Data URIs are big: recorded by hash, which still tells two inputs apart.
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        return {"data_uri_sha256": digest, "chars": len(value)}
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value if isinstance(value, str) else repr(value)


def derive_id(request: Request) -> str:
    """The id of a request without one: ``gen-`` or ``edit-`` and 12 hex digits of the SHA-256
    of its canonical JSON (same request, same id, in any run)."""
    canonical = json.dumps(
        {"kind": request.kind, **request.to_json()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    prefix = "gen" if request.kind == "generate" else "edit"
    return f"{prefix}-{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:12]}"
