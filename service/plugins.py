"""Which code an HTTP spec may name: the trust model of `import:` references.

The service runs code only from where its operator put it. A spec submitted over HTTP may
name (in `model.import`, `loss.import`, `metrics.import`, `data.import`):

- a `.py` file inside one of the folders of `GOLDILOCKS_PLUGIN_PATH`. A relative file resolves
  against each folder in order (the first that has it wins); an absolute one must lie inside a
  folder. Symlinks are followed and `..` is resolved: the file itself must be inside, so
  `../x.py` and a link pointing out are refused. The accepted reference is rewritten to the
  absolute file, so the driver process imports the very file that was checked.
- a dotted module (`pkg.mod:Name`) that is importable here and whose every package level lies
  in an installed location (site-packages / dist-packages: sysconfig's purelib and platlib) or
  in a plugin folder (the folders are put on `sys.path`, the service's and its drivers'). With
  `GOLDILOCKS_PLUGIN_PACKAGES` set, only the top-level packages it lists. Private names
  (`_x`) are refused: they are no package's interface.

Anything else (a file beside the spec on the client's machine, the standard library, the
service's own code, an `obj:` reference of the Python API) is a 422 naming the field. Checking
a dotted module imports its parent packages (trusted by then), never the module itself; the
import, and the code's first run, happen in `prepare` as for the CLI.
"""

from __future__ import annotations

import contextlib
import importlib.util
import site
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

from models.imports import OBJECT_SOURCE, ImportFailed, is_file, split_ref
from service.settings import ServiceSettings

TRUST = "the service runs code only from where its operator put it"
_WHERE = "the service's plugin folders (GOLDILOCKS_PLUGIN_PATH)"


class Refused(ValueError):
    """An `import:` reference the service will not run; the message names the field."""


def check_refs(refs: dict[str, str], settings: ServiceSettings) -> tuple[dict[str, str], list[str]]:
    """(the accepted references, files made absolute; one "field: message" per refused one)."""
    accepted, errors = {}, []
    for field, ref in refs.items():
        try:
            accepted[field] = check_ref(field, ref, settings)
        except Refused as err:
            errors.append(str(err))
    return accepted, errors


def check_ref(field: str, ref: str, settings: ServiceSettings) -> str:
    """The reference as the driver must import it, or Refused."""
    try:
        source, name = split_ref(ref)
    except ImportFailed as err:
        raise Refused(f"{field}: {err}") from None
    if source == OBJECT_SOURCE:
        raise Refused(
            f"{field}: {ref!r} names an object handed to the Python API, which a service "
            f"cannot receive; name a file in {_WHERE} or an installed module"
        )
    attr = ref.rpartition(":")[2]
    if is_file(source):
        return f"{_plugin_file(field, source, settings)}:{attr}"
    _check_module(field, source, name, settings)
    return ref


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _plugin_file(field: str, source: str, settings: ServiceSettings) -> Path:
    dirs = settings.plugin_dirs
    if not dirs:
        raise Refused(
            f"{field}: {_show(source)}: this service has no plugin folders (GOLDILOCKS_PLUGIN_PATH "
            f"is not set), so it imports no files; {TRUST}"
        )
    path = Path(source)  # no expanduser: '~' would be the server's home
    candidates = [path] if path.is_absolute() else [folder / path for folder in dirs]
    try:
        resolved = [c.resolve() for c in candidates]
        for file in resolved:
            if _inside(file, dirs) and file.is_file():
                return file
        exist = [f.exists() for f in resolved]
    except (OSError, ValueError) as err:  # a NUL byte, a name too long, a loop of links
        raise Refused(f"{field}: {_show(source)} is not a usable file name ({err})") from None
    # `..`, an absolute path or a link that leads out: said so, rather than "not there"
    outside = [i for i, file in enumerate(resolved) if not _inside(file, dirs)]
    if outside and (len(outside) == len(resolved) or any(exist[i] for i in outside)):
        raise Refused(f"{field}: {_show(source)} points outside {_WHERE}; {TRUST}")
    raise Refused(f"{field}: {_show(source)} is not in {_WHERE}; {TRUST}")


def _show(source: str) -> str:
    return repr(source if len(source) <= 120 else source[:117] + "...")


@lru_cache(maxsize=1)
def installed_roots() -> tuple[Path, ...]:
    """Where installed packages live: sysconfig's purelib/platlib, and site's folders
    (Debian's dist-packages)."""
    paths = sysconfig.get_paths()
    roots = [paths.get("purelib"), paths.get("platlib")]
    with contextlib.suppress(AttributeError):  # some virtualenv flavours lack it
        roots += site.getsitepackages()
    return tuple(dict.fromkeys(Path(r).resolve() for r in roots if r))


def ensure_importable(settings: ServiceSettings) -> None:
    """The plugin folders on this process's `sys.path` (after everything else), so a dotted
    module in one imports here as it will in the driver."""
    for folder in settings.plugin_dirs:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


def _check_module(field: str, source: str, name: str, settings: ServiceSettings) -> None:
    parts = source.split(".")
    if not all(p.isidentifier() for p in parts):
        raise Refused(f"{field}: {source!r} is neither a .py file nor a module name")
    private = [p for p in (*parts, *name.split(".")) if p.startswith("_")]
    if private:
        raise Refused(
            f"{field}: {private[0]!r} is a private name; over HTTP name a package's public "
            "module and object"
        )
    allowed = settings.allowed_packages
    if allowed is not None and parts[0] not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        raise Refused(
            f"{field}: package {parts[0]!r} is not one the service allows "
            f"(GOLDILOCKS_PLUGIN_PACKAGES: {listed}); {TRUST}"
        )
    ensure_importable(settings)
    trusted = (*installed_roots(), *settings.plugin_dirs)
    for depth in range(1, len(parts) + 1):
        module = ".".join(parts[:depth])
        try:
            spec = importlib.util.find_spec(module)  # imports the (checked) parent packages
        except Exception as err:  # a parent's own code failed, or it is not a package
            raise Refused(f"{field}: cannot import module {module!r}: {err}") from None
        if spec is None:
            raise Refused(f"{field}: no module {module!r} is installed on the service")
        places = [spec.origin] if spec.has_location and spec.origin else []
        places += list(spec.submodule_search_locations or [])
        if not places or not all(_inside(Path(p).resolve(), trusted) for p in places):
            raise Refused(
                f"{field}: module {module!r} is neither an installed package nor in "
                f"{_WHERE}; {TRUST}"
            )
