"""Transfer: the best LR for the run the user will actually do, predicted from the runs swept.

`points.py` (one swept value's best LR, its bracket and bootstrap draws), `fit.py` (the power
law through them, its intervals, and when not to trust it), `analysis.py` (report.json's
`transfer` section). Pure numpy; the method and its limits: docs/transfer.md.
"""
