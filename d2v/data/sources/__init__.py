"""Source readers: embedded (Debian/PyPI packages) and real benchmarks."""
