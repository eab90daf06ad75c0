"""Agentic generation in the core: recipes extracted from references (free) and images
made from references or a saved recipe through the one paid path (flat price)."""
