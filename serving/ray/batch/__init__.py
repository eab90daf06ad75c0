"""``kiln batch``: a JSONL file of requests rendered on Ray Data (DESIGN.md §6).

``lines`` parses and validates a file with the HTTP code; ``runner`` runs the valid lines
on worker pools (``worker``), writes images and the manifest (``manifest``) and reports
progress (``progress``). ``POST /v1/batches`` runs the same thing as a job.
"""
