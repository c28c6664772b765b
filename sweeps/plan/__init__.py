"""Planning: the only place lanes are made.

lanes.py (Lane, Population, Point and how lanes group into populations), search.py (the
searchers behind one ask/tell interface: grid, random, tpe), planner.py (asks a searcher,
makes lanes and populations, hears scores back).
"""
