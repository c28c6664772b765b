"""Preparing a sweep: the spec's references made absolute and imported, the data loaded, the
model checked against it, the plan made and the budgets checked. Nothing is written: every
input problem raises SpecError naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.budget import check_budget
from sweeps.core.data import DataError, Dataset, load_dataset
from sweeps.errors import SpecError
from sweeps.plan.lanes import Lane, Population
from sweeps.plan.planner import Planner
from sweeps.settings import Settings, get_settings
from sweeps.spec import SweepSpec, check_against_data


@dataclass
class Prepared:
    """A validated spec, its data and its plan: everything a run needs, nothing written yet."""

    spec: SweepSpec
    data: Dataset
    planner: Planner
    base_dir: Path | None = None
    ran: bool = False  # its planner hands out each population once: one run per Prepared

    @property
    def lanes(self) -> list[Lane]:
        """The lanes planned so far (all of them for grid and random; tpe makes them as it runs)."""
        return self.planner.lanes

    @property
    def populations(self) -> list[Population]:
        return self.planner.populations


def load_sweep_data(
    spec: SweepSpec, base_dir: Path | None = None, datasets_dir: Path | None = None
) -> Dataset:
    d = spec.data
    path, text = d.path, d.text
    if d.dataset is not None:  # an upload: a table or arrays, or a text corpus (.txt)
        upload = uploaded_dataset(d.dataset, datasets_dir)
        path, text = (None, str(upload)) if upload.suffix == ".txt" else (str(upload), None)
    return load_dataset(
        name=d.name,
        path=path,
        text=text,
        block_size=d.block_size or 64,
        n_samples=d.n_samples,
        arrays=_loader_arrays(d.import_, d.args) if d.import_ else None,
        target=d.target,
        task=d.task,
        val_fraction=d.val_fraction,
        standardize=d.standardize,
        seed=spec.train.data_seed,
        base_dir=base_dir,
    )


def uploaded_dataset(dataset_id: str, root: Path | None) -> Path:
    """The file of a dataset uploaded to the service (`POST /datasets`), by its id, in the
    service's datasets folder `root` (GOLDILOCKS_DATASETS_DIR)."""
    from sweeps.uploads import find_upload

    found = find_upload(root, dataset_id) if root else None
    if found is None:
        raise DataError("data.dataset", f"no uploaded dataset {dataset_id!r} here")
    return found[1]


def _loader_arrays(ref: str, args: dict[str, Any]) -> dict[str, Any]:
    """What a data loader returns (a mapping of arrays, or (x, y)), or the arrays themselves
    when the reference names them (handed to the Python API)."""
    from models import imports

    try:
        source = imports.resolve(ref)
    except imports.ImportFailed as err:
        raise DataError("data.import", str(err)) from None
    if callable(source):
        try:
            source = source(**args)
        except Exception as err:  # the user's loader
            raise DataError("data.import", f"{ref} raised {type(err).__name__}: {err}") from err
    if isinstance(source, tuple) and len(source) == 2:
        source = {"x": source[0], "y": source[1]}
    if not hasattr(source, "keys"):
        raise DataError(
            "data.import",
            f"{ref} gave a {type(source).__name__}; return a mapping of arrays "
            "(x/y or x_train/y_train/x_val/y_val) or a pair (x, y)",
        )
    return dict(source)


def resolve_imports(spec: SweepSpec, base_dir: Path | None = None) -> SweepSpec:
    """The spec with its files' references made absolute, each one checked to import
    (SpecError naming the field, before anything is created)."""
    from models import imports

    refs = {field: imports.canonical(ref, base_dir) for field, ref in spec.import_refs().items()}
    errors = []
    for field, ref in refs.items():
        try:
            imports.resolve(ref)
        except imports.ImportFailed as err:
            errors.append(f"{field}: {err}")
    if errors:
        raise SpecError(errors)
    return spec.with_import_refs(refs) if refs else spec


def prepare(
    spec: SweepSpec, base_dir: Path | None = None, settings: Settings | None = None
) -> Prepared:
    """Load the data and plan the sweep; every input problem raises SpecError (nothing written).

    A library entry point: `settings` are read here when not given (GOLDILOCKS_*), and passed
    down (the budgets' caps, the datasets folder)."""
    settings = settings or get_settings()
    spec = resolve_imports(spec, base_dir)
    try:
        data = load_sweep_data(spec, base_dir, settings.datasets_dir)
    except DataError as err:
        raise SpecError([str(err)]) from None
    check_against_data(spec, data)
    planner = Planner(spec, max_lanes=settings.max_lanes)
    check_budget(spec, data, planner, settings)  # lanes, steps, memory: before anything exists
    return Prepared(spec, data, planner, base_dir)
