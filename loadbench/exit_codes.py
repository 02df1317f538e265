"""The command line's exit codes, one home for every command that returns one.

0 done (every gate passed), 1 a crash (Python's own code for an uncaught exception: a loadbench
bug), and the codes below. Importing this module imports nothing else, so any command may use it.
"""

EXIT_USAGE = 2  # bad input or target, or a run stopped early (its simulator died, its disk filled)
EXIT_NO_COMPLETED = 3  # the run finished but no measured request completed
EXIT_GATES_FAILED = 99  # a gate failed (k6's convention); compare's regression too
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C; results are still written
