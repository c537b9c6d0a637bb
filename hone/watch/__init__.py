"""What watches a run: hooks called at named points of the loop, the metrics log, progress
display, plots and checkpoints."""
