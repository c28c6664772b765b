"""GPU and TPU trials are correct by construction: the environment each trial gets, the Ray
resources it asks for, and a loud failure when JAX is not on the device it was given.
(No accelerator here: these are the unit tests; docs/deploy.md says how to run on one.)"""

from __future__ import annotations

import pytest
from conftest import tiny_spec_dict

from sweeps.errors import SpecError
from sweeps.exec.raytune.cluster import accelerator_env, trial_resources, worker_env
from sweeps.exec.raytune.points import check_backend
from sweeps.spec import parse_spec


def spec_with(**resources):
    return parse_spec({**tiny_spec_dict(), "resources": resources})


def test_cpu_trials_are_pinned_to_the_cpu():
    spec = spec_with()
    assert accelerator_env(spec) == {"JAX_PLATFORMS": "cpu"}
    assert trial_resources(spec) == {"cpu": 1.0, "gpu": 0.0}


@pytest.mark.parametrize(
    ("resources", "trials", "threads"),
    [
        ({"cpus_per_trial": 1}, None, 1),  # an adaptive plan: its trial count is unknown
        ({"cpus_per_trial": 1}, 2, 1),  # the slots are full
        ({"cpus_per_trial": 1}, 1, 2),  # one trial, two slots: the empty slot's CPU too
        ({"cpus_per_trial": 2.5}, 1, 4),  # whole CPUs, twice
        ({"cpus_per_trial": 1, "max_concurrent_trials": 16}, 1, 8),  # not past the cores
        ({"cpus_per_trial": 1, "max_concurrent_trials": 4}, 3, 1),
    ],
)
def test_a_cpu_trial_trains_on_its_cpus_and_those_its_sweep_leaves_idle(
    resources, trials, threads, monkeypatch
):
    from sweeps.exec import trial

    monkeypatch.setattr(trial.os, "cpu_count", lambda: 8)
    spec = spec_with(**resources)
    assert trial.trial_threads(spec, trials) == threads
    cpus = str(max(1, int(resources["cpus_per_trial"])))
    assert f"intra_op_parallelism_threads={cpus}" in worker_env(spec)["XLA_FLAGS"]


def test_a_thread_setting_travels_to_the_trials_with_the_trial_not_the_environment():
    from sweeps.exec.raytune.cluster import RayTarget, ray_trial_threads

    spec = spec_with(cpus_per_trial=1)
    target = RayTarget(cpu_threads=3)
    assert ray_trial_threads(spec, [], target) == 3  # what the trainable is handed
    assert not any(k.startswith("GOLDILOCKS_") for k in worker_env(spec, target))


def test_trials_sharing_a_gpu_do_not_preallocate_it():
    spec = spec_with(gpus_per_trial=0.25, cpus_per_trial=2)
    env = worker_env(spec)
    assert env["JAX_PLATFORMS"] == "cuda"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    # jaxlib 0.10 raises when both fraction variables are set: we set neither
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env and "XLA_CLIENT_MEM_FRACTION" not in env
    assert trial_resources(spec) == {"cpu": 2.0, "gpu": 0.25}


def test_a_trial_with_a_whole_gpu_keeps_jax_preallocation():
    env = accelerator_env(spec_with(gpus_per_trial=1))
    assert env == {"JAX_PLATFORMS": "cuda"}


def test_tpu_trials_ask_ray_for_whole_chips():
    spec = spec_with(tpus_per_trial=4)
    assert accelerator_env(spec) == {"JAX_PLATFORMS": "tpu"}
    assert trial_resources(spec) == {"cpu": 1.0, "gpu": 0.0, "TPU": 4}


@pytest.mark.parametrize(
    ("resources", "phrase"),
    [
        ({"tpus_per_trial": 3}, "resources.tpus_per_trial: 3 TPU chips: use one of 0, 1, 2, 4, 8"),
        ({"gpus_per_trial": 1.5}, "resources.gpus_per_trial: a fraction of a GPU is below 1"),
        ({"gpus_per_trial": 1, "tpus_per_trial": 1}, "choose one accelerator"),
    ],
)
def test_impossible_accelerator_requests_are_refused(resources, phrase):
    with pytest.raises(SpecError) as err:
        spec_with(**resources)
    assert phrase in str(err.value)


@pytest.mark.parametrize(("platform", "backend"), [("cuda", "cpu"), ("tpu", "cpu"), ("cpu", "gpu")])
def test_a_trial_on_the_wrong_backend_fails_loudly(platform, backend):
    with pytest.raises(RuntimeError, match=f"given {platform} but JAX runs on {backend}"):
        check_backend(platform, backend)


@pytest.mark.parametrize(("platform", "backend"), [("cuda", "gpu"), ("tpu", "tpu"), ("cpu", "cpu")])
def test_a_trial_on_its_backend_passes(platform, backend):
    check_backend(platform, backend)
