"""Local stand-ins of the outside services, speaking their real protocols on
loopback: for the benchmarks, the test suite and plug-in authors' own tests."""
