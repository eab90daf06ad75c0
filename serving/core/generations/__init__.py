"""What a generation resolves before it runs: the style it uses."""
