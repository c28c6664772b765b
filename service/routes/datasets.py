"""/datasets: upload a data file (the raw body), read what the service knows of it, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service import datasets
from service.deps import AuthDep, SettingsDep
from service.errors import ApiError, BodyTooLarge
from service.schemas import DatasetInfo, DatasetList, ErrorResponse

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    422: {"model": ErrorResponse, "description": "Invalid input; the message names the field."},
}
router = APIRouter(prefix="/datasets", tags=["datasets"], dependencies=[AuthDep], responses=_ERRORS)

DatasetId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="The dataset id (32 hex digits).")
]
EXAMPLE_CSV = "x0,x1,y\n" + "".join(f"{i},{i % 3 - 1},{i % 2}\n" for i in range(12))
_BODY = {
    "requestBody": {
        "required": True,
        "description": "The data file itself (not multipart): .npz, .csv, .parquet or .txt, "
        "as `?name=` says.",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "example": EXAMPLE_CSV,
            }
        },
    }
}


def _public(meta: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(**meta, url=f"/datasets/{meta['id']}")


@router.post(
    "",
    status_code=201,
    response_model=DatasetInfo,
    openapi_extra=_BODY,
    responses={
        200: {"model": DatasetInfo, "description": "The same file was uploaded before."},
        413: {"model": ErrorResponse, "description": "Over GOLDILOCKS_MAX_UPLOAD_BYTES."},
        415: {"model": ErrorResponse, "description": "A multipart form, not the file."},
        507: {"model": ErrorResponse, "description": "The service cannot store it."},
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    settings: SettingsDep,
    name: Annotated[
        str,
        Query(
            description="The file's name; its suffix says how to read it: .npz (arrays x/y "
            "or x_train/y_train/x_val/y_val), .csv or .parquet (a table), .txt (a corpus).",
            max_length=128,
            examples=["table.csv"],
        ),
    ],
    target: Annotated[
        str | None,
        Query(
            description="A table's target column, to validate the table as a sweep will read "
            "it (default: a column named 'target' or 'y').",
            max_length=256,
        ),
    ] = None,
) -> DatasetInfo:
    """Upload one data file, validated by loading it as a sweep would (a file that does not
    load is 422 and nothing is kept). 201 with its id; the same file again answers 200 with
    the same id. A spec then says `data: {dataset: <id>}`."""
    name, kind = datasets.check_name(name)
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media.startswith("multipart/"):
        raise ApiError(
            415,
            "Content-Type: send the file itself as the body (application/octet-stream) and "
            "its name in ?name=, not a multipart form",
        )
    limit = settings.max_upload_bytes
    folder = await run_in_threadpool(datasets.incoming, settings)
    path, digest, size = folder / name, datasets.hasher(kind), 0
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:  # the middleware counts too; never store past the limit
                    raise BodyTooLarge(limit, "GOLDILOCKS_MAX_UPLOAD_BYTES")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        await run_in_threadpool(datasets.Staged(path, name, kind, "", 0).discard)
        raise
    if size == 0:
        await run_in_threadpool(datasets.Staged(path, name, kind, "", 0).discard)
        raise ApiError(422, "body: the request body is empty; send the data file")
    staged = datasets.Staged(path, name, kind, digest.hexdigest(), size)
    meta, created = await run_in_threadpool(datasets.commit, staged, settings, target)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/datasets/{meta['id']}"
    return _public(meta)


@router.get("", response_model=DatasetList)
async def list_datasets(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DatasetList:
    """Uploaded datasets, newest first."""
    found = await run_in_threadpool(datasets.list_all, settings)
    items = [_public(m) for m in found[offset : offset + limit]]
    return DatasetList(items=items, total=len(found), limit=limit, offset=offset)


@router.get(
    "/{dataset_id}",
    response_model=DatasetInfo,
    responses={404: {"model": ErrorResponse, "description": "No such dataset."}},
)
async def get_dataset(dataset_id: DatasetId, settings: SettingsDep) -> DatasetInfo:
    """What the service knows of an uploaded dataset."""
    hit = await run_in_threadpool(datasets.find, settings, dataset_id)
    if hit is None:
        raise ApiError(404, f"id: no dataset '{dataset_id}'")
    return _public(hit[0])
