"""The store of datasets uploaded to the service, as files: one rule for finding one.

    ROOT/<id>.json      its metadata (id, name, kind, bytes, sha256, ...), written last
    ROOT/<id>/<name>    the file itself

The service writes it (service/datasets.py); a driver reads a spec's `data: {dataset: <id>}`
from it. Light on purpose (no JAX): both import it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ID = re.compile(r"^[0-9a-f]{32}$")


def find_upload(root: Path, dataset_id: str) -> tuple[dict[str, Any], Path] | None:
    """(metadata, the file) of an uploaded dataset, or None: an id of another shape, no
    metadata (a commit cut short), or metadata naming a file that is not there."""
    if not ID.match(dataset_id or ""):
        return None
    try:
        meta = json.loads((Path(root) / f"{dataset_id}.json").read_text())
        file = Path(root) / dataset_id / meta["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if meta.get("id") != dataset_id or not file.is_file():
        return None
    return meta, file
