"""Workflows: functions and DAGs, and the input/output schemas compiled from their type hints."""
