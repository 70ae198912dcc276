"""Core: what every stage shares — errors, numba settings, counter-based random streams,
constants, the Traces container, statistics (intervals), atomic writes, scenario
configuration and number formatting.  Nothing here imports a pipeline stage."""
