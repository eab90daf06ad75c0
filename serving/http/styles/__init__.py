"""HTTP routes and wire models of styles: import, list, read, delete, train."""
