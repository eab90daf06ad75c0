"""Image-to-prompt: attributes of an image as prompt text, ranked by open_clip (CLIP alone,
no caption model). See ``pipeline.ImageToPrompt``; the vocabulary ships as JSON data in
``vocabulary/``. Nothing heavy is imported here: torch and open_clip load on first use.
"""
