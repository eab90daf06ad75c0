"""HTTP routes and wire models of licenses."""
