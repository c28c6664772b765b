"""Admission: body -> validated spec -> a queued row, or an error that creates nothing; and,
when a driver starts, the spec it runs (`driver_spec`: data files and imports checked again).

Validation is the CLI's (`sweeps.spec.parse_spec` and `sweeps.pipeline.prepare`, which loads the
data), so a spec the CLI refuses is refused here with the same "field: message" lines, and
nothing (row, folder, MLflow experiment) exists until it passed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service import datasets, plugins, store
from service.errors import ApiError
from service.settings import ServiceSettings
from sweeps.errors import SpecError
from sweeps.spec import SpecLoader, load_json, load_yaml

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json"})
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


class _NoAliasLoader(SpecLoader):
    """The spec's strict YAML, without anchors/aliases: a few hundred bytes of nested aliases
    expand into billions of nodes once validated (the "billion laughs"); a spec never needs
    them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in a sweep spec", mark
            )
        return super().compose_node(parent, index)


def _invalid(errors: list[str]) -> ApiError:
    return ApiError(422, errors[0] if len(errors) == 1 else "; ".join(errors), errors)


def parse_body(body: bytes, content_type: str | None) -> Any:
    """The spec as Python data: JSON (the default) or YAML by Content-Type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    is_json = media in JSON_TYPES or media.endswith("+json")
    if media and not is_json and media not in YAML_TYPES:
        raise ApiError(
            415,
            f"Content-Type: '{media}' is not accepted; send the spec as application/json "
            "or application/yaml",
        )
    if not body.strip():
        raise _invalid(["spec: the request body is empty; send the sweep spec"])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _invalid([f"spec: the body is not UTF-8 text (byte {err.start})"]) from None
    try:
        # The CLI's loaders: a key given twice is refused the same way, naming its path.
        return load_json(text) if is_json else load_yaml(text, _NoAliasLoader)
    except SpecError as err:
        raise _invalid(err.errors) from None
    except RecursionError:
        raise _invalid(["spec: nested too deeply"]) from None


def validate(raw: Any, settings: ServiceSettings) -> dict[str, Any]:
    """The canonical spec (all defaults filled in) of a valid submission, else ApiError(422).

    Over HTTP, `import:` references must name the operator's code (service/plugins.py) and are
    stored made absolute; an uploaded dataset's id is checked and stays the spec's
    `data.dataset` (the driver's spec gets the file: `driver_spec` below)."""
    from sweeps.pipeline import prepare  # imports JAX: the app warms it at start-up
    from sweeps.spec import parse_spec

    dataset_id = None
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        try:
            data = datasets.data_source(raw["data"], settings)
        except ValueError as err:
            raise _invalid([str(err)]) from None
        if data is not raw["data"]:
            dataset_id, raw = raw["data"]["dataset"], {**raw, "data": data}
    try:
        spec = parse_spec(raw)
    except SpecError as err:
        raise _invalid(err.errors) from None
    except RecursionError:
        raise _invalid(["spec: nested too deeply"]) from None
    refs, errors = plugins.check_refs(spec.import_refs(), settings)
    if dataset_id is None:
        for field in ("path", "text"):
            value = getattr(spec.data, field)
            if value is not None:
                try:
                    resolve_data_path(value, settings, field=f"data.{field}")
                except ValueError as err:
                    errors.append(str(err))
    if errors:
        raise _invalid(errors)
    spec = spec.with_import_refs(refs) if refs else spec
    try:
        prepare(spec, base_dir=settings.datasets_path)
    except SpecError as err:
        raise _invalid(err.errors) from None
    canonical = spec.model_dump(mode="json")
    if dataset_id is not None:  # stored as submitted: the id, not the server's file
        canonical["data"].update(path=None, text=None, dataset=dataset_id)
    return canonical


def spec_hash(spec: dict[str, Any]) -> str:
    """Of the canonical spec: a retry re-encoded (YAML vs JSON, key order) is the same body."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def submit(
    sessions: sessionmaker[Session],
    settings: ServiceSettings,
    *,
    body: bytes,
    content_type: str | None,
    idempotency_key: str | None,
) -> tuple[store.Sweep, bool]:
    """Validate and queue; return (sweep, replayed). Raises ApiError (422/409/415/429)."""
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise _invalid(["Idempotency-Key: 1 to 255 printable ASCII characters, no spaces"])
    spec = validate(parse_body(body, content_type), settings)
    digest = spec_hash(spec)
    with sessions() as session:
        if idempotency_key is not None:
            existing = store.get_by_idempotency_key(session, key=idempotency_key)
            if existing is not None:
                return _replay(existing, digest, idempotency_key), True
        # The bound is soft under concurrent submits (count, then insert): good enough for a
        # queue whose point is to push back on a client that floods it.
        queued = store.count_status(session, status=store.SweepStatus.queued)
        if queued >= settings.max_queue:
            raise ApiError(
                429,
                f"queue: full ({queued} sweeps waiting, max_queue {settings.max_queue}); "
                f"retry in {settings.retry_after_s} s",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        try:
            sweep = store.create_sweep(
                session,
                name=spec["name"],
                spec=spec,
                executor=settings.executor,
                idempotency_key=idempotency_key,
                body_hash=digest,
            )
        except IntegrityError:  # the same key, submitted concurrently: the first one won
            session.rollback()
            if idempotency_key is None:
                raise
            existing = store.get_by_idempotency_key(session, key=idempotency_key)
            if existing is None:
                raise
            return _replay(existing, digest, idempotency_key), True
    return sweep, False


def _replay(existing: store.Sweep, digest: str, key: str) -> store.Sweep:
    if existing.body_hash != digest:
        raise ApiError(
            409,
            f"Idempotency-Key: '{key}' was used for another spec (sweep {existing.id}); "
            "use a new key for a new sweep",
        )
    return existing


def driver_spec(spec: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """The spec a driver runs: an uploaded dataset's id, and a relative data.path or data.text,
    made absolute files under the datasets folder (the driver resolves paths against its spec
    file's folder: the sweep folder); its `import:` references checked again against the
    plugin folders of now (a sweep queued before the operator narrowed them does not run
    code from outside). ValueError says why not."""
    from sweeps.spec import parse_spec

    data = dict(spec.get("data") or {})
    if data.get("dataset"):
        data = datasets.data_source(data, settings)
    else:
        for field in ("path", "text"):
            if data.get(field):
                data[field] = str(resolve_data_path(data[field], settings, field=f"data.{field}"))
    out = {**spec, "data": data}
    # the stored spec is canonical: parsed again, it names its references as the spec does
    refs, errors = plugins.check_refs(parse_spec(out).import_refs(), settings)
    if errors:
        raise ValueError("; ".join(errors))
    for field, ref in refs.items():
        section = field.split(".")[0]
        out[section] = {**out[section], "import": ref}
    return out


def resolve_data_path(path: str, settings: ServiceSettings, field: str = "data.path") -> Path:
    """`data.path` (or `data.text`) inside the datasets folder, or ValueError (nothing may
    leave it)."""
    root = settings.datasets_path
    try:
        resolved = (root / path).resolve()
    except (OSError, ValueError) as err:  # a NUL byte, a name too long, a loop of links
        raise ValueError(f"{field}: not a usable file name ({err})") from None
    if not resolved.is_relative_to(root):
        raise ValueError(
            f"{field}: '{path}' is outside the service's datasets folder; give a path "
            "relative to it, or upload the file (POST /datasets)"
        )
    return resolved
