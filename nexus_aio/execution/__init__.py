"""Running workflows: the execution service, the runtime of one execution, executors, events."""
