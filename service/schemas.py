"""What the API answers (the request body of a submit is the sweep spec itself: sweeps.spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.store import SweepStatus


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong, naming the field or the reason.")
    errors: list[str] = Field(default_factory=list, description='One "field: message" a line.')


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class SweepProgress(BaseModel):
    lanes_total: int = 0
    lane_steps_done: int = 0
    lane_steps_total: int = 0
    trials_done: int = 0
    trials_total: int = 0
    trials_running: int = 0
    phase: str = Field("", description="Before training: e.g. measuring the CPU lane width.")
    stage: str = Field(
        "",
        description="measuring (the CPU lane width), starting (MLflow, Ray, compiles ahead), "
        "compiling (trials started, no step trained yet) or training.",
    )
    fraction: float = Field(0.0, description="lane-steps done / total, 0..1")
    lane_steps_per_s: float | None = Field(
        None, description="The measured pace since training began; null before."
    )
    eta_s: float | None = Field(
        None,
        description="Seconds left at the measured pace (not counting the time before training "
        "began); null until two points are in.",
    )
    updated_at: datetime | None = None


class SweepMlflow(BaseModel):
    tracking_uri: str | None = Field(
        None,
        description="The MLflow store the sweep logs to (the service's GOLDILOCKS_TRACKING_URI "
        "or MLFLOW_TRACKING_URI; default sqlite:///<GOLDILOCKS_DATA_DIR>/mlflow.db).",
    )
    experiment_id: str | None = None
    parent_run_id: str | None = None
    experiment_url: str | None = Field(
        None,
        description="The experiment's runs table in the MLflow UI (GOLDILOCKS_MLFLOW_UI_URL, "
        "else a tracking server's address, else `mlflow ui`'s default address).",
    )
    parent_run_url: str | None = Field(None, description="The sweep's parent run in the UI.")
    ui_command: str | None = Field(
        None,
        description="For a database store with no UI configured: the command that serves "
        "the UI the links point at (run where the database file is).",
    )


class SweepSummary(BaseModel):
    id: str
    name: str
    status: SweepStatus
    executor: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    cancel_requested: bool = False
    url: str


class SweepPublic(SweepSummary):
    spec: dict[str, Any]
    progress: SweepProgress | None = None
    mlflow: SweepMlflow | None = None
    attempts: int = Field(
        0,
        description="Driver launches: 1, plus one per resume (a launch that a graceful "
        "service shutdown interrupted is not counted). Past 1 + max_resume_attempts the "
        "sweep fails.",
    )
    report_url: str | None = Field(None, description="Once the report exists.")
    plot_urls: dict[str, str] = Field(default_factory=dict)


class SweepCreated(SweepPublic):
    """The queued sweep (or, for a retried submit with the same Idempotency-Key, the first)."""


class SweepList(BaseModel):
    items: list[SweepSummary]
    total: int
    limit: int
    offset: int


class DatasetInfo(BaseModel):
    """An uploaded data file. A spec names it as `data: {dataset: <id>}` (a text corpus: plus
    `block_size`)."""

    id: str = Field(description="32 hex digits, from the file's type and content.")
    name: str = Field(description="The file name it was uploaded under (the first time).")
    kind: Literal["arrays", "table", "text"] = Field(description=".npz, .csv/.parquet, .txt")
    bytes: int
    sha256: str = Field(description="Of the file's type and bytes (the id is its start).")
    created_at: datetime
    rows: int | None = Field(None, description="Examples (a table's rows); null for text.")
    characters: int | None = Field(None, description="A text corpus's length.")
    task: str | None = Field(None, description="As loaded without a spec: inferred.")
    input_shape: list[int] = Field(default_factory=list, description="One example's shape.")
    num_classes: int | None = None
    features: list[str] | None = Field(None, description="A table's feature columns.")
    vocabulary_size: int | None = Field(None, description="A text corpus's distinct characters.")
    url: str


class DatasetList(BaseModel):
    items: list[DatasetInfo]
    total: int
    limit: int
    offset: int


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: str = Field(description='"ok" when ready, else "degraded" (still live).')
    live: bool
    ready: bool
    checks: dict[str, ComponentHealth]
