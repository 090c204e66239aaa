"""The coordinator's durable state: SQLite by default, PostgreSQL by URL."""
