"""Workflows: functions and DAGs, and what their type hints compile to.

Nothing is re-exported here: import each name from the module that defines it.

- ``workflow``: ``Workflow`` (DAGs) and the compiled workflows the registry holds;
- ``inputs``: ``InputSchema``/``InputField``, a workflow's inputs checked per request;
- ``checks``: annotations compiled once into checking closures; ``problems``: what a request got
  wrong, reported as one ``ValidationError``;
- ``hints``: reading annotations; ``jsontypes``: JSON type names, ``MISSING``;
- ``jsonschema``: JSON Schema of an annotation (OpenAPI); ``describe``: the ``/schema`` format;
- ``coerce``: query and path parameter text read as its annotated type;
- ``endpoint_params`` / ``endpoint_problems``: custom endpoint signatures, read the same way.
"""
