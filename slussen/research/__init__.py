"""Research records: what the evaluation knows about each case, under a keyed pseudonym, written
in the same transaction as the fact they record (docs/evaluation.md)."""
