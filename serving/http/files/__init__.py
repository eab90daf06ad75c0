"""HTTP route of signed file URLs."""
