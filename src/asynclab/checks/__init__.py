"""The exercise checks, one module per section (``s01_handlers``, ``s02_dependencies``, ...).

Every module here is imported the first time a check is asked for, and registers its
exercises with :func:`asynclab.course.checking.exercise`.
"""
