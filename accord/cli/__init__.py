"""The top floor's `accord` command: one entry point, each role contributes its commands."""
