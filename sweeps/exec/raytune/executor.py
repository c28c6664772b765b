"""The Ray Tune executor: each Ray Tune trial trains one planned population, or, where the
sweep fits this host, one trial trains them all on every CPU (cluster.one_trial_per_host).

The driver (this process) hands populations to trials (tune_config.py), and every trial's
eval points come back through a Tune callback into the dispatcher (collector.py): per-lane
histories, progress and MLflow all stay on the driver, so workers need no MLflow access.
A retried trial (`FailureConfig.max_failures`) resumes from its last checkpoint, and
`goldilocks resume` restores an interrupted sweep with `Tuner.restore`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from models import imports
from sweeps.core.data import Dataset
from sweeps.core.population import Timing
from sweeps.errors import SweepFailed, SweepInterrupted
from sweeps.exec.precompile import CompileAhead
from sweeps.exec.raytune import collector as collectors
from sweeps.exec.raytune import tune_config as tune_setup
from sweeps.exec.raytune.cluster import (
    LOCAL,
    RayTarget,
    bundle_resources,
    init_ray,
    one_trial_per_host,
    ray_trial_threads,
    sigterm_stops_tune,
    trial_resources,
    worker_env,
)
from sweeps.exec.raytune.collector import Collector, CollectorCallback, PointLog
from sweeps.exec.raytune.trainable import population_trainable, warm_trainable
from sweeps.exec.raytune.warm import warm_trainer
from sweeps.exec.trial import WidthBook
from sweeps.folder import POINTS, RAY
from sweeps.plan.planner import Planner
from sweeps.spec import SweepSpec
from sweeps.stream import Dispatcher


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        spec: SweepSpec,
        data: Dataset,
        sweep_dir: Path,
        *,
        target: RayTarget = LOCAL,
        widths: WidthBook | None = None,
        ahead: CompileAhead | None = None,
    ):
        self.spec = spec
        self.data = data
        self.sweep_dir = Path(sweep_dir)
        self.target = target
        self.widths = widths  # the driver's decisions (None: each population's default rule)
        self.ahead = ahead  # programs compiled here while Ray started (cluster.compile_ahead)

    def run(self, planner: Planner, dispatcher: Dispatcher, *, resume: bool = False) -> Timing:
        """Run (or resume) the planner's populations as Ray Tune trials."""
        spec = self.spec
        # The dispatcher is the record; of Tune's own loggers only the JSON one stays (the
        # result grid reads it back); TensorBoardX would complain about every diverged lane.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        # Tune's new console output prints its tables even at verbose=0; our CLI draws its own.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

        init_ray(spec, self.target)
        storage = (self.sweep_dir / RAY).resolve()
        experiment = str(storage / "tune")
        collector = Collector(dispatcher, PointLog(self.sweep_dir / POINTS))
        if resume:
            collector.replay()

        # populations Tune is handed up front (an adaptive or refined plan asks as it goes)
        planned = [] if tune_setup.searched(planner) else planner.populations
        one_trial = one_trial_per_host(spec, planned, self.target)
        expected = 1 if one_trial else planner.expected_trials
        dispatcher.progress.trials_total = expected
        train = dict(
            spec_json=spec.model_dump_json(),
            populations=planned,
            data=self.data,
            threads=ray_trial_threads(spec, planned, self.target),
            widths={pop.id: self.widths.width(pop) for pop in planned} if self.widths else {},
            checkpoint_every_s=self.target.checkpoint_every_s,
            programs=self.ahead.take() if self.ahead else None,
            user_objects=imports.ship(
                [ref for field, ref in spec.import_refs().items() if field != "data.import"]
            ),
        )
        # ASHA's rungs count reports (`training_iteration`): every point is one
        reporting = {"per_point": spec.scheduler.name == "asha",
                     "trial_hook": self.target.trial_hook}  # fmt: skip
        if one_trial and self.target.warm_trainer:
            # the Ray's warm trainer trains; the trial only reports (warm.py)
            env = worker_env(spec, self.target)
            warm_trainer(env)  # started now (its JAX import beside Tune's set-up), then kept
            trainable = tune.with_parameters(
                warm_trainable, trainer_env=env, call=[ray.put(train)], **reporting
            )
        else:
            trainable = tune.with_parameters(population_trainable, **reporting, **train)
        resources = bundle_resources(spec) if one_trial else trial_resources(spec)
        trainable = tune.with_resources(trainable, resources)
        run_config = tune.RunConfig(
            name="tune",
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[CollectorCallback(experiment), JsonLoggerCallback()],
            verbose=0,
        )
        collectors.register(experiment, collector)
        tune_setup.register(experiment, planner, self.widths)
        t0 = time.perf_counter()
        try:
            with sigterm_stops_tune():
                if resume and tune.Tuner.can_restore(experiment):
                    tuner = tune.Tuner.restore(
                        experiment, trainable, resume_unfinished=True, resume_errored=True
                    )
                else:
                    tuner = tune.Tuner(
                        trainable,
                        param_space=tune_setup.param_space(planner, one_trial),
                        tune_config=tune_setup.tune_config(spec, planner, experiment),
                        run_config=run_config,
                    )
                tuner.fit()  # its ResultGrid would re-read logs we do not write
        finally:
            collectors.unregister(experiment)
            tune_setup.unregister(experiment)
            programs = self.ahead.close() if self.ahead else None
        wall = time.perf_counter() - t0

        if dispatcher.errors:
            first = next(iter(dispatcher.errors.values()))
            raise SweepFailed(f"{len(dispatcher.errors)} trial(s) failed after retries: {first}")
        if len(dispatcher.finished) < expected:
            raise SweepInterrupted(
                f"{expected - len(dispatcher.finished)} of {expected} trials did not finish; "
                "resume with `goldilocks resume`"
            )
        # Compile time: the driver's, while Ray started, plus whatever the trials compiled.
        compile_s = (programs.compile_s if programs else 0.0) + sum(dispatcher.compile_s.values())
        return Timing(compile_s=compile_s, train_s=wall)
