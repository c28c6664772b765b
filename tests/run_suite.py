"""`make test`: the suite as two pytest processes side by side, for a 2-core machine.

The "system" tests (tests/conftest.py marks them: Ray, services, servers, drivers, machine
timings) run one after another in one process, their output streamed; every other test runs in a
second process beside them, its output printed when both are done. Most system time is spent
waiting on other processes (Ray, drivers, servers starting), so the second process fills the
cores they leave idle. Exit code: the first failing process's (0 when both pass).

    python tests/run_suite.py [extra pytest arguments, given to both]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

NO_TESTS = 5  # pytest's exit code when a selection is empty


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv]
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as unit_log:
        unit = subprocess.Popen(
            [*pytest, "--durations=5", "-m", "not system and not manual"],
            stdout=unit_log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print("== system tests (Ray, services, servers, drivers), one after another", flush=True)
        system = subprocess.run([*pytest, "--durations=15", "-m", "system and not manual"])
        unit.wait()
        unit_log.seek(0)
        print("\n== every other test (run beside them)", flush=True)
        sys.stdout.write(unit_log.read())
    codes = [rc for rc in (system.returncode, unit.returncode) if rc not in (0, NO_TESTS)]
    print(f"\n== the suite took {(time.monotonic() - t0) / 60:.1f} min", flush=True)
    return codes[0] if codes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
