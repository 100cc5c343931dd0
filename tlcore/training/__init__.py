"""training: configs, the loop, the run store, and jobs in Ray workers.

config         TrainConfig, BatchProgress, Evaluation, TrainResult   train    the loop (a plain function)
feature_cache  frozen-prefix features on disk                        runs     the run store
compare        transfer against scratch                              memory   what a job needs in memory
worker         Ray, and the process that trains one job              jobs     the line of jobs on the server
demo           the develop-a-model demo, offline

Only ``worker`` and ``jobs`` use Ray, and they import it on first use.
"""
