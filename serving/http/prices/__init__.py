"""``GET /v1/prices``: what each priced operation costs, as a prompt bar shows it."""
