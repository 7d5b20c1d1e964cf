"""The GPU campaign: pack here, run there in <= 10-minute commands, unpack here.

A GPU window is short (30 minutes of device time, 10 minutes a command, a 64 MiB tree there and
8 files back), so everything a window should do is decided here, once: ``pack`` puts the
wheels, the data and a queue into ``.campaign/``; ``run`` (on the GPU machine) benchmarks once,
then works through the queue with several runs side by side, stops itself before the command's
limit and packs what finished into ``$OUT``; ``unpack`` files that into ``results/`` and marks
the finished runs done, so the next window continues the queue.
"""
