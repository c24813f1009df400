"""Instructor tools: collect submissions, autograde them with nbgrader in a sandbox, report grades.

``python -m aecourse grade --help`` lists the steps; the README's "Grading" section walks through them.
"""
