"""Executors: train the planner's populations and stream their eval points (base.py says the
protocol). inline.py runs them in this process; raytune/ runs each as a Ray Tune trial."""
