"""Bundled example workflows, served by ``make run`` / bare ``python -m nexus_aio``.

Each module here follows the discovery convention (see ``nexus_aio.discovery``).
"""
