"""Visits: the mapping visit, the social network, interests, barriers, the action plan, sluss 2
hand-overs and follow-ups."""
