"""Real processes for the bench, the lab and the tests: the service under gunicorn on a
free port, throwaway PostgreSQL databases, the service's flask commands, each started,
waited for and stopped within bounded times.

`root` arguments name the source tree a process runs from (default: this checkout); the
bench passes another revision's tree to measure it beside this one.
"""
