"""`make test`: the suite in two phases, for a 2-core machine.

1. Two pytest processes side by side: the "system" tests (tests/conftest.py marks them: Ray,
   private servers) one after another, their output streamed; every other test in a second
   process beside them, its output printed when both are done. Most system time is spent
   waiting on other processes (Ray, drivers, servers starting), so the second process fills
   the cores they leave idle.
2. The "alone" tests (their assertions time the machine), with nothing beside them.

Exit code: the first failing phase's (0 when all pass).

    python tests/run_suite.py [extra pytest arguments, given to every process]
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
    with tempfile.TemporaryFile("w+") as rest_log:
        rest = subprocess.Popen(
            [*pytest, "--durations=10", "-m", "not system and not alone and not manual"],
            stdout=rest_log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print("== system tests (Ray, private servers), one after another", flush=True)
        system = subprocess.run([*pytest, "--durations=15", "-m", "system and not manual"])
        rest.wait()
        rest_log.seek(0)
        print("\n== every other test (run beside them)", flush=True)
        sys.stdout.write(rest_log.read())
    print("\n== tests that time the machine, alone", flush=True)
    alone = subprocess.run([*pytest, "--durations=5", "-m", "alone and not manual"])
    print(f"\n== the suite took {(time.monotonic() - t0) / 60:.1f} min", flush=True)
    codes = [p.returncode for p in (system, rest, alone)]
    failed = [rc for rc in codes if rc not in (0, NO_TESTS)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
