"""`goldilocks ARGS` with every eval point of the inline executor held back
FAULT_POINT_DELAY_S seconds: a sweep that is still training when a fault test strikes, like a
slow model, without burning the CPU a slow model would (the machine has 2 cores).

    python tests/faults/slow_cli.py run spec.json --out DIR --executor inline ...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    delay = float(os.environ.get("FAULT_POINT_DELAY_S", "0"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import sweeps.exec.inline as inline

    real = inline.run_trial

    def slow_trial(*args, **kwargs):
        for point in real(*args, **kwargs):
            time.sleep(delay)
            yield point

    inline.run_trial = slow_trial
    from service.cli import main as cli

    sys.argv[0] = "goldilocks"
    cli()


if __name__ == "__main__":
    main()
