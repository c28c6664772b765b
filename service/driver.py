"""The driver process of one sweep: `python -m service.driver --parent-pid PID -- run|resume ...`
(or `--standby`: started before its sweep, told it on stdin, see service/standby.py).

A thin wrapper around `sweeps.cli` (same arguments, same exit codes) that makes a driver safe to
run under the service:

- It asks the kernel for a signal when the service dies (Linux `PR_SET_PDEATHSIG`), even by
  SIGKILL, and then stops the way a cancel stops it (one SIGTERM to itself: the sweep ends
  "interrupted", MLflow runs KILLED, exit 130), so that no driver outlives its service
  unsupervised: the restarted service resumes it. The death signal is SIGHUP, not SIGTERM: the
  kernel sends it once per thread of ours (the setting is per thread and JAX, MLflow and Ray
  start threads), and a second SIGTERM in the middle of the clean-up would cut it short.
  It is set here, after exec, rather than in a `preexec_fn` (not safe in a threaded parent);
  it follows the *thread* that forked us: the service's runner thread, which lives as long as
  the service does.
- Before `sweeps.cli` installs its own SIGTERM handling, SIGTERM (a cancel while the driver is
  still importing) ends it with 130 rather than by the default action.
- An orphan's clean-up has a watchdog (GOLDILOCKS_DRIVER_STOP_TIMEOUT_S, 60 s): past it, every
  thread's stack goes to driver.log and the process exits, so a hang cannot pin the sweep.
- `kill -USR2 <pid>` prints every thread's stack into driver.log.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

from sweeps.errors import EXIT_INTERRUPTED

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGHUP
STOP_TIMEOUT_S = float(os.environ.get("GOLDILOCKS_DRIVER_STOP_TIMEOUT_S", "60"))


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0)
    # The parent may have died before prctl: then nobody would ever send that signal.
    if os.getppid() != parent_pid:
        sys.exit(EXIT_INTERRUPTED)


def _parent_died(signum: int, frame: object) -> None:
    signal.signal(DEATH_SIGNAL, signal.SIG_IGN)  # one arrives per thread: act on the first
    faulthandler.dump_traceback_later(STOP_TIMEOUT_S, exit=True)
    # Stop exactly as a cancel does, through whichever SIGTERM handler is in charge now
    # (sweeps.cli's, or the Ray executor's, which lets Tune save its state first).
    os.kill(os.getpid(), signal.SIGTERM)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    standby = args[2:] == ["--standby"]
    if len(args) < 3 or args[0] != "--parent-pid" or (args[2] != "--" and not standby):
        sys.exit("usage: python -m service.driver --parent-pid PID (-- run|resume ...|--standby)")
    parent_pid, rest = int(args[1]), args[3:]
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(DEATH_SIGNAL, _parent_died)
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    try:
        _die_with_parent(parent_pid)
        if standby:  # started before its sweep (service/standby.py): imports, then waits
            from service.standby import await_sweep

            rest = await_sweep()
        from sweeps.cli import app

        app(args=rest, prog_name="goldilocks")  # exits with the CLI's own code
    except KeyboardInterrupt:  # before the CLI took over (imports, argument parsing)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
