"""The user's own objects (models, losses, metrics, data loaders), found by reference.

A reference is ``"source:Name"``: the source is a ``.py`` file (relative to the spec's folder
until `canonical` makes it absolute) or a dotted module importable here (``mypkg.nets``);
``Name`` may be dotted (``Outer.make``). ``obj:Name#N`` names an object handed to the Python
API (`register_object`): it has no source to import, it travels with the sweep.

Files are loaded as modules of their own (``goldilocks_user.<stem>_<hash>``), with their
folder on ``sys.path`` while they run, so a file may import its siblings. Those modules are
marked to be pickled *by value*, so Ray workers that never saw the file get its code with the
trial (see `ship`). A file is loaded again when it changes: a notebook that edits ``nets.py``
and sweeps again trains the new code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

OBJECT_SOURCE = "obj"  # the source part of a reference to an object handed to the API


class ImportFailed(ValueError):
    """A reference that does not resolve; the message says why (the caller names the field)."""


# ref -> object, for objects handed to the API and everything a trial was shipped
_OBJECTS: dict[str, Any] = {}
# absolute file -> ((mtime_ns, size), module): a changed file is loaded again
_FILES: dict[str, tuple[tuple[int, int], ModuleType]] = {}
_LOCK = threading.Lock()
_BY_VALUE: list[ModuleType] = []  # the user's file modules (and their siblings)


def split_ref(ref: str) -> tuple[str, str]:
    source, _, name = ref.rpartition(":")
    if not source or not name:
        raise ImportFailed(f"expected 'file.py:Name' or 'package.module:Name', got {ref!r}")
    return source, name.split("#")[0]


def is_file(source: str) -> bool:
    return source.endswith(".py")


def canonical(ref: str, base_dir: Path | None) -> str:
    """The reference with a relative file made absolute (against `base_dir`, else the working
    directory): the same file is then the same reference wherever the sweep is resumed."""
    source, _ = split_ref(ref)
    if not is_file(source):
        return ref
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir) if base_dir else Path.cwd()) / path
    return f"{path.resolve()}:{ref.rpartition(':')[2]}"


def register_object(obj: Any) -> str:
    """A reference for an object handed over from Python (a class defined in a notebook)."""
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    name = "".join(c if c.isalnum() or c in "_." else "_" for c in name) or "object"
    if not (name[0].isalpha() or name[0] == "_"):
        name = "_" + name
    with _LOCK:
        for ref, known in _OBJECTS.items():
            if known is obj and ref.startswith(OBJECT_SOURCE + ":"):
                return ref
        n = 1 + sum(r.startswith(f"{OBJECT_SOURCE}:{name}#") for r in _OBJECTS)
        ref = f"{OBJECT_SOURCE}:{name}#{n}"
        _OBJECTS[ref] = obj
    # Defined in a user's module (a test file, a script beside the notebook), not an installed
    # package: a Ray worker may not import it, so it travels by value like a notebook's code.
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is not None and _is_users(module):
        _by_value([module])
    return ref


def _is_users(module: ModuleType) -> bool:
    import sysconfig

    path = getattr(module, "__file__", None)
    if not path or module.__name__ == "__main__":  # __main__ goes by value anyway
        return False
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    return not any(str(Path(path).resolve()).startswith(str(Path(p).resolve())) for p in installed)


def resolve(ref: str) -> Any:
    """The object a (canonical) reference names; ImportFailed says why not."""
    if ref in _OBJECTS:
        return _OBJECTS[ref]
    source, name = split_ref(ref)
    if source == OBJECT_SOURCE:
        raise ImportFailed(
            f"{ref!r} was an object handed to the Python API in another process; "
            "pass the same object again (sweeps.run_sweep(..., model=MyNet))"
        )
    module = _load_file(Path(source)) if is_file(source) else _import_module(source)
    obj: Any = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportFailed(f"{source} has no {name!r}") from None
    return obj


def ship(refs: list[str]) -> dict[str, Any]:
    """The objects of these references, for a trial on another machine: pickled with the
    trial, by value where they come from files (the worker may never have seen them)."""
    objects = {ref: resolve(ref) for ref in refs}
    _by_value(list(_BY_VALUE))  # again: Ray (and its copy of cloudpickle) may be loaded now
    return objects


def install(objects: dict[str, Any]) -> None:
    """Make shipped objects resolvable in this process (a Ray worker, before it trains)."""
    with _LOCK:
        _OBJECTS.update(objects)


def identity(refs: list[str]) -> tuple[int, ...]:
    """Which objects these references are now: part of a compiled program's cache key, so an
    edited file or a redefined notebook class is never served an old program."""
    return tuple(id(resolve(ref)) for ref in refs)


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportFailed(f"cannot import module {name!r}: {err}") from None
    except Exception as err:  # the module's own code failed
        raise ImportFailed(f"importing {name!r} raised {type(err).__name__}: {err}") from err


def _load_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ImportFailed(f"file not found: {path}")
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        cached = _FILES.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        mod_name = f"goldilocks_user.{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ImportFailed(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        _ensure_package()
        before = set(sys.modules)
        folder = str(path.parent)
        sys.modules[mod_name] = module
        sys.path.insert(0, folder)  # so the file may import its siblings
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            sys.modules.pop(mod_name, None)
            raise ImportFailed(f"running {path} raised {type(err).__name__}: {err}") from err
        finally:
            sys.path.remove(folder)
        # The file and the siblings it imported travel by value with a trial.
        siblings = [
            sys.modules[m]
            for m in set(sys.modules) - before
            if str(getattr(sys.modules[m], "__file__", "") or "").startswith(folder)
        ]
        _by_value([module, *siblings])
        _FILES[str(path)] = (stamp, module)
        return module


def _ensure_package() -> None:
    if "goldilocks_user" not in sys.modules:
        package = ModuleType("goldilocks_user")
        package.__path__ = []  # a namespace for the user's files
        sys.modules["goldilocks_user"] = package


def _by_value(modules: list[ModuleType]) -> None:
    """Pickle these modules' objects by value: with cloudpickle, and with Ray's copy of it
    (when Ray is loaded: importing it costs seconds)."""
    _BY_VALUE.extend(m for m in modules if m not in _BY_VALUE)
    picklers = []
    for name in ("cloudpickle", "ray.cloudpickle" if "ray" in sys.modules else ""):
        if not name:
            continue
        try:
            picklers.append(importlib.import_module(name))
        except ImportError:
            continue
    for pickler in picklers:
        for module in modules:
            with contextlib.suppress(ValueError):  # already registered, or not in sys.modules
                pickler.register_pickle_by_value(module)
