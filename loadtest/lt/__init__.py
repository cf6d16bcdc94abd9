"""The load test driver's parts, one job per module; loadtest/run.py is the entry point
and loadtest/README.md says what each section measures."""
