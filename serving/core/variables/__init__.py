"""Serving's environment variables, declared by group: one frozen dataclass a module.

``Settings`` (serving/core/settings.py) inherits every group, and the GPU fast path's
switches from ``pipelines/fast_path.py``; README.md's configuration table lists them
group by group (serving/core/settings_table.py).
"""
