"""Agentic generation over HTTP: ``POST /v1/agentic/extract`` and
``POST /v1/agentic/generations`` (the loop itself lives in ``agentic/``)."""
