"""HTTP route of batches (POST /v1/batches) and the JSONL line parser it shares with kiln batch."""
