"""The Ray Tune executor; the only package that imports Ray. cluster.py starts or joins Ray,
trainable.py is the trial, tune_config.py the experiment, collector.py the driver's side."""
