"""The HTTP adapter: the FastAPI app, its middleware (request context, body guard), and one
router and wire-model module per endpoint family, each converting a request once and
calling the core."""
