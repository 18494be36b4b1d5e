"""Associations in sluss 2: the hand-over requests addressed to an organisation, seen and
answered by its representatives."""
