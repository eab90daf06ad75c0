"""The image-to-prompt CLIP deployment."""
