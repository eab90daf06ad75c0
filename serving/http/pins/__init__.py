"""HTTP routes and wire models of pins."""
