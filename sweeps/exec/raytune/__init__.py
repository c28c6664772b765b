"""The Ray Tune executor; the only package that imports Ray. cluster.py starts or joins Ray,
trainable.py is the trial, points.py what it trains, warm.py the trainer a Ray keeps warm,
tune_config.py the experiment, collector.py the driver's side."""
