"""HTTP routes and wire models of jobs: status, events (SSE), cancel."""
