"""Licensed exports of an asset: upscale (to 8K), background removal, and downloads in
PNG / JPEG / WebP / SVG at a chosen long side (DESIGN.md §1: free for base and agentic
images, for style images only once licensed)."""
