"""Alembic migrations of the ledger's database; ``serving.ledger.db.migrate`` runs them."""
