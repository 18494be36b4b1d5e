"""The coordinator's review of the access log, and the patient's log extract (PDL 4:3, 8:5)."""
