"""pytest runs every notebook here with nbval (fast mode, test caches): see aecourse._paths."""

from aecourse import _paths

_paths.configure_for_tests()
