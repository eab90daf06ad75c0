"""The application core: domain services (accounts, ledger, assets, licenses, styles, pins,
jobs, exports), the paid-image path and the ports to the models. No FastAPI, Ray or wire
models here (DESIGN.md §2)."""
