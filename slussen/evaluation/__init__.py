"""Evaluation for evaluators: the pseudonymised flow, baseline vs six-month outcomes, small-number
suppression, the evaluator's page with charts, and the CSV and PDF exports (docs/evaluation.md)."""
