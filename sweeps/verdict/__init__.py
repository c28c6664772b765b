"""The verdict, computed once at the end: lane results, analysis (statuses, edges, zone,
winner), report.json and plots."""
