"""Image-to-prompt: the CLIP client port, the use case (paid extracts and the free
extract of generations and edits) and the mixing of an extract into a prompt."""
