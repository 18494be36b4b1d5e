"""The start page, language choice and health check."""
