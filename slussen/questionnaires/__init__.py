"""Questionnaires: forms/ as data, answered online with a letter's code or keyed in from paper,
scored in one place, exported as FHIR."""
