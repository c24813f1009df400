"""Instructor tools: collect submissions, autograde them with nbgrader in a sandbox, report grades.

``python -m aecourse grade --help`` lists the steps; docs/instructors.md walks through them.
"""

# The course modules the lessons' setup cells import: the judge and the fork server import them once,
# before any submitted code runs, for every notebook after.
LESSON_MODULES = ("anomaly", "data", "latent", "likelihood", "losses", "models", "plotting", "recipes", "training")
