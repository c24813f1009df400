"""nbgrader settings for the course: instructors edit solutions/, students get lessons/.

    nbgrader generate_assignment 01_autoencoders --force   # solutions/ -> lessons/
    python3 -m aecourse grade --help                       # collect, autograde (sandboxed), report

The grading command adds its own settings on top of these (aecourse/classroom/autograde.py):
the sandboxed Execute step, warnings on stderr ignored, deleted test cells put back.
"""

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "aecourse"
c.CourseDirectory.source_directory = "solutions"  # the only notebooks edited by hand
c.CourseDirectory.release_directory = "lessons"  # generated student copies, committed
c.CourseDirectory.db_url = "sqlite:///gradebook.db"  # zero-setup default gradebook (not committed)

# Student copies: solutions become a stub, hidden tests are removed, outputs are cleared.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# nbgrader's own autograde: up to 5 minutes a cell (its default, 30 s, is tight on a busy
# grading machine). `python3 -m aecourse grade` sets its own limits (--cell-seconds).
c.Execute.timeout = 300
