"""Reports: the results of a run as a table, JSON, JUnit and markdown."""
