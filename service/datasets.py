"""Uploaded datasets (`POST /datasets`): received, validated by loading, stored by content.

An upload is one data file, the raw request body, its name in `?name=`: `.npz` (arrays; read
with `allow_pickle=False`), `.csv` / `.parquet` (a table), or `.txt` (a text corpus). It is
streamed into `<datasets>/.incoming/`, hashed on the way, loaded once with
`sweeps.core.data.load_dataset` (a file that does not load is refused, and nothing is kept),
then moved to

    <datasets folder>/<id>/<name>       the file, alone in its folder (sweeps.pipeline's
                                         `uploaded_dataset` layout)
    <datasets folder>/<id>.json         what the API answers about it (written last)

The id is 32 hex digits of the SHA-256 of the file's type and bytes: the same file uploaded
again is the same dataset (answered 200, not stored twice). A spec names it as
`data: {dataset: <id>}` (a text corpus: plus `block_size`); before `prepare` and in the
driver's spec the id becomes the absolute file (`data.path`, or `data.text` for a corpus).
Uploads are data, never code: no name ending in .py, no pickles.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.errors import ApiError
from service.settings import ServiceSettings
from sweeps.uploads import find_upload

KINDS = {".npz": "arrays", ".csv": "table", ".parquet": "table", ".txt": "text"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INCOMING = ".incoming"
_COMMIT = threading.Lock()  # one process (see service.cli serve): a lock is enough


@dataclass
class Staged:
    """An upload received but not yet validated: `path` (in its own folder under .incoming)."""

    path: Path
    name: str
    kind: str
    digest: str
    size: int

    @property
    def dataset_id(self) -> str:
        return self.digest[:32]

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def check_name(name: str) -> tuple[str, str]:
    """(name, kind) of an upload's file name, or 422 naming `query.name`."""
    if not _NAME.match(name or ""):
        raise ApiError(
            422,
            f"query.name: {name!r} is not a file name: 1 to 128 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit (no folders)",
        )
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise ApiError(
            422,
            f"query.name: {name!r}: an upload is a data file, one of "
            f"{', '.join(KINDS)} (got {Path(name).suffix or 'no suffix'!r})",
        )
    return name, KINDS[suffix]


def incoming(settings: ServiceSettings) -> Path:
    folder = settings.datasets_path / INCOMING / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def clean_incoming(settings: ServiceSettings) -> None:
    """Uploads a previous process left half-received (it died mid-upload)."""
    shutil.rmtree(settings.datasets_path / INCOMING, ignore_errors=True)


def hasher(kind: str) -> Any:
    h = hashlib.sha256()
    h.update(f"goldilocks-dataset:{kind}\n".encode())  # the same bytes as .txt and .csv differ
    return h


def commit(staged: Staged, settings: ServiceSettings, target: str | None) -> tuple[dict, bool]:
    """Validate and store a staged upload: (its metadata, created). Refused: 422, nothing kept.
    The same content stored before is answered as it is (created False)."""
    try:
        existing = find(settings, staged.dataset_id)
        if existing is not None:
            return existing[0], False
        facts = _validate(staged, target)
        root = settings.datasets_path
        meta = {
            "id": staged.dataset_id,
            "name": staged.name,
            "kind": staged.kind,
            "bytes": staged.size,
            "sha256": staged.digest,
            "created_at": datetime.now(UTC).isoformat(),
            **facts,
        }
        with _COMMIT:
            existing = find(settings, staged.dataset_id)
            if existing is not None:  # a concurrent upload of the same file won
                return existing[0], False
            folder = root / staged.dataset_id
            if folder.exists():  # a commit cut short before its metadata was written
                shutil.rmtree(folder)
            staged.path.parent.rename(folder)  # the folder holds exactly the file
            tmp = root / f".{staged.dataset_id}.json.tmp"
            tmp.write_text(json.dumps(meta, indent=1))
            tmp.replace(root / f"{staged.dataset_id}.json")
        return meta, True
    except OSError as err:
        raise ApiError(507, f"datasets: cannot store the upload: {err.strerror or err}") from None
    finally:
        staged.discard()  # a no-op once moved


def _validate(staged: Staged, target: str | None) -> dict[str, Any]:
    """Load the file as a sweep would; what the API tells about it. 422 if it does not load."""
    from sweeps.core.data import DataError, load_dataset

    text = staged.kind == "text"
    try:
        if text:  # windows of one character: any corpus a block_size could cut
            ds = load_dataset(text=staged.path, block_size=1, val_fraction=0.0)
        else:
            ds = load_dataset(path=staged.path, target=target, val_fraction=0.0, standardize=False)
    except DataError as err:
        where = "query.target" if err.field == "data.target" else "body"
        # the message names the staged file; the client knows it by its own name
        message = err.message.replace(str(staged.path), staged.name)
        raise ApiError(
            422, f"{where}: {staged.name} is not a usable {staged.kind} file: {message}"
        ) from None
    except Exception as err:  # anything the loaders did not foresee is still a bad file
        raise ApiError(
            422, f"body: {staged.name} is not a usable {staged.kind} file: {type(err).__name__}"
        ) from None
    split = ds.x_val is not ds.x_train
    rows = ds.n_train + (ds.n_val if split else 0)
    facts: dict[str, Any] = {
        "task": ds.task,
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
    }
    if text:
        return {**facts, "rows": None, "characters": rows + 1, "vocabulary_size": ds.vocab_size}
    if staged.kind == "table":
        facts["features"] = list(ds.feature_names)
    return {**facts, "rows": rows}


def find(settings: ServiceSettings, dataset_id: str) -> tuple[dict, Path] | None:
    """(metadata, the file) of an uploaded dataset, or None."""
    return find_upload(settings.datasets_path, dataset_id)


def list_all(settings: ServiceSettings) -> list[dict]:
    """Every uploaded dataset, newest first."""
    root = settings.datasets_path
    found = []
    with contextlib.suppress(OSError):
        for meta_file in root.glob("*.json"):
            hit = find(settings, meta_file.stem)
            if hit is not None:
                found.append(hit[0])
    return sorted(found, key=lambda m: (m.get("created_at", ""), m["id"]), reverse=True)


def data_source(data: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """A spec's `data` with an uploaded dataset's id replaced by its absolute file
    (`text:` for a corpus, else `path:`); other data sections as they are. An id the store
    does not know is a ValueError naming `data.dataset`."""
    dataset_id = data.get("dataset")
    others = ("name", "path", "text", "import")
    if not isinstance(dataset_id, str) or any(data.get(k) is not None for k in others):
        return data  # no id, or the spec's own validation will say what is wrong
    hit = find(settings, dataset_id)
    if hit is None:
        raise ValueError(
            f"data.dataset: no uploaded dataset {dataset_id!r} on this service; "
            "upload the file first (POST /datasets, or goldilocks submit does it)",
        )
    meta, file = hit
    key = "text" if meta.get("kind") == "text" else "path"
    return {**{k: v for k, v in data.items() if k != "dataset"}, key: str(file)}
