"""Task registry: each task is a loader, a prompt template with label words, and its metrics.

See :mod:`zolab.runners.tasks.base` for the contract. Built-in tasks register on import of
:mod:`zolab.runners.tasks.builtin`; offline real-data tasks in :mod:`zolab.runners.tasks.offline`.
"""
