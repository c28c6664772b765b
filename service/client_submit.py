"""What `goldilocks submit` does with a spec before it is sent: parse it here, check it (no
upload for a spec that cannot pass), say which `import:` files stay behind, upload its local
data file (POST /datasets) and name the upload in the spec instead."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sweeps.errors import EXIT_BAD_INPUT

if TYPE_CHECKING:
    from rich.console import Console

    from service.client import GoldilocksClient


def local_spec(body: bytes, kind: str) -> dict[str, Any] | None:
    """The spec as data, to find its local files; None if it does not parse (the server
    then says what is wrong with it, as for any spec)."""
    from sweeps.errors import SpecError
    from sweeps.spec import load_json, load_yaml

    try:
        text = body.decode("utf-8-sig")
        raw = load_json(text) if kind == "application/json" else load_yaml(text)
    except (UnicodeDecodeError, SpecError, RecursionError):
        return None
    return raw if isinstance(raw, dict) else None


def check_locally(raw: dict[str, Any], err: Console) -> None:
    """The spec's own checks (fields, names, ranges: no JAX, a fraction of a second) before
    any data is uploaded: a typo must not cost a 200 MB upload first. What only the server
    can judge (its plugin folders, the data itself) it still checks on submit."""
    from rich.markup import escape

    from sweeps.errors import SpecError
    from sweeps.spec import parse_spec

    try:
        parse_spec(raw)
    except SpecError as exc:
        err.print("[bold red]error:[/] invalid sweep spec (nothing was uploaded):")
        for line in exc.errors:
            err.print(f"  - {escape(line)}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except RecursionError:
        return  # the server says "nested too deeply", as for any spec


def _import_files(raw: dict[str, Any]) -> dict[str, str]:
    """The spec's `import:` references that name .py files, by field."""
    found = {}
    for section in ("model", "loss", "metrics", "data"):
        ref = raw.get(section)
        ref = ref.get("import") if isinstance(ref, dict) else None
        if isinstance(ref, str) and ref.rpartition(":")[0].endswith(".py"):
            found[f"{section}.import"] = ref
    return found


def note_imports(raw: dict[str, Any], err: Console) -> None:
    from rich.markup import escape

    for field, ref in _import_files(raw).items():
        source = ref.rpartition(":")[0]
        err.print(
            f"[yellow]note:[/] {field}: {escape(source)} is not uploaded: the server imports "
            "code only from its own plugin folders (GOLDILOCKS_PLUGIN_PATH) and installed "
            f"packages, never from a client; its operator must put {escape(Path(source).name)} "
            "there",
            soft_wrap=True,
            highlight=False,
        )


def _upload_name(path: Path) -> str:
    """A name the server accepts ([A-Za-z0-9][A-Za-z0-9._-]*, 128 at most), suffix kept."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in path.stem)
    stem = stem.lstrip("._-") or "data"
    return stem[: 128 - len(path.suffix)] + path.suffix.lower()


def upload_data(
    client: GoldilocksClient, raw: dict[str, Any], folder: Path, err: Console
) -> dict[str, Any] | None:
    """Upload the local file of `data.path` / `data.text`; the spec naming it as
    `data.dataset` instead, or None when there is nothing to upload."""
    from rich.markup import escape

    data = raw.get("data")
    if not isinstance(data, dict):
        return None
    sources = [f for f in ("name", "path", "text", "import", "dataset") if data.get(f) is not None]
    field = sources[0] if len(sources) == 1 else None
    if field not in ("path", "text") or not isinstance(data[field], str):
        return None  # nothing local, or not one source: the server's validation says so
    local = Path(data[field]).expanduser()
    local = local if local.is_absolute() else folder / local
    if not local.is_file():
        err.print(
            f"[yellow]note:[/] data.{field}: {escape(data[field])} is not a file here; the "
            "server looks for it in its datasets folder",
            soft_wrap=True,
            highlight=False,
        )
        return None
    target = data.get("target") if isinstance(data.get("target"), str) else None
    info, new = client.upload_dataset(local, name=_upload_name(local), target=target)
    err.print(
        f"uploaded data.{field} {escape(str(local))} ({info['bytes']:,} bytes) as dataset "
        f"{info['id']}" + ("" if new else " (the server had it already)"),
        soft_wrap=True,
        highlight=False,
    )
    sent = {k: v for k, v in data.items() if k != field}
    return {**raw, "data": {**sent, "dataset": info["id"]}}
