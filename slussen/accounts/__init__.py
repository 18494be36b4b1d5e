"""Accounts: units, users, roles, login."""
