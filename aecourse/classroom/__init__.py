"""Instructor tools: collect submissions, autograde them with nbgrader in a sandbox, report grades.

``python -m aecourse grade --help`` lists the steps; docs/instructors.md walks through them.
"""
