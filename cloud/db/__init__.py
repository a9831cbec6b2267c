"""Storage of the cloud service: SQLAlchemy Core tables, the engine and repository functions."""
