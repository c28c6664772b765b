"""The numerical core, pure JAX/numpy: data arrays, losses, optimizers, schedules, the
population trainer and the LR range test. It imports neither Ray nor MLflow nor the spec."""
