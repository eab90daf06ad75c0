"""Kiln Studio: the web app at ``/``, served as static files by the ingress.

The app speaks only the public HTTP API (what it does, a script can do). Its files are
plain ES modules and CSS under ``static/`` (no build step, no Node.js). They are served
under ``/studio/<digest>/``, where the digest is a hash of every file: any change gives
new URLs, so those answers may be cached for a year (``immutable``) while the page
itself is ``no-cache``. Every answer carries a Content-Security-Policy without inline
script or style.
"""
