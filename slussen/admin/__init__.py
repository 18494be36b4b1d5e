"""The administrator's screens: units, user accounts and the one-time link to a new password."""
