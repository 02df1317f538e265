"""The contract between the boxes: the few leaf types every part of loadbench speaks in.

A workload makes a ``Prompt``; the scheduler hands it, with a fresh ``RequestRecord``, to a
``Sender`` (the interface a deployment implements); the sender stamps the record, or raises
``RequestFailed`` with an ``ErrorCategory``; the recorder reads the finished record. Requests carry
the headers in ``headers``, which the simulator reads back. Errors that stop a run before or
around it are the ``LoadbenchError`` family.

Every module here imports nothing from loadbench outside this package, so any box can depend on
the contract without depending on another box: workloads do not import metrics to make a prompt,
deployments do not import the scheduler to be called by it.
"""
