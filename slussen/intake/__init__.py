"""Intake: staff flag a patient, a coach registers a call or a 1177 message, the public
self-referral form. A referral for a patient with an open case attaches to it."""
