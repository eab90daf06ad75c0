"""``POST /v1/edits``: instruct, replace, recreate and erase on an image or an asset."""
