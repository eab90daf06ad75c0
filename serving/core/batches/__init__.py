"""Batches in the core: a batch's checked lines as values (``lines``) and the ``batch``
job's submission (``submission``); the lines are checked against the routes' wire
models by ``serving.http.batch.parsing`` and run by ``serving.ray.batch``."""
