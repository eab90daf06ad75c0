"""Agentic generation: style components (palette, grading, lighting, composition)
extracted from up to 10 references, blended into a recipe, and an agent that plans, acts,
critiques and refines generations toward it (DESIGN.md §1, §2, §9).

Pure numpy/OpenCV/scikit-image work plus ``pipelines.params``: no HTTP, no Ray; the agent
generates through a callable its caller gives it."""
