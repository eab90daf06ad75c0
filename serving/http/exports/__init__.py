"""HTTP routes and wire models of exports: upscale, background removal, downloads."""
