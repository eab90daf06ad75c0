"""The Ray adapter: the Serve application and its deployments (models, CLIP), placement,
Kiln inside Serve's HTTP proxy, and render-farm batches on Ray Data."""
