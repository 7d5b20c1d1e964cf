"""Run bookkeeping: config -> run (pipeline), checkpoints and weights files, which keys define a
setting, side-by-side GPU jobs, searches' objectives and launchers, host memory on the CPU."""
