"""``POST /v1/image-to-prompt`` and the ``image_to_prompt`` field of generations and edits:
attributes of an image as prompt text, ranked by open_clip on its own deployment."""
