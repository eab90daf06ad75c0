"""Alembic migrations of the ledger's database; ``serving.core.ledger.db.migrate`` runs them."""
