"""HTTP routes and wire models of assets."""
