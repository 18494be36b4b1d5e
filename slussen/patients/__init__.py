"""Patients: identity encrypted at rest, found by blind index, every access audited."""
