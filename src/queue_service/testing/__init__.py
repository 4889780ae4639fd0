"""For tests, ours and plug-in authors': local stand-ins of the outside
services speaking their real protocols on loopback, and the fixtures that run
one job in-process (pytest_plugin, jobs)."""
