"""The activity directory and public calendar: organisations keep their activities, the
coordinator moderates, the public and the coaches find occasions."""
