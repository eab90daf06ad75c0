"""Image-to-prompt: the CLIP client port and the mixing of an extract into a prompt."""
