"""Cases: the sluss workflow engine, worklists and the case page."""
