"""The database adapter: models, sessions and migrations."""
