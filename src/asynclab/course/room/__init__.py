"""The room: what ``python -m asynclab class`` shows an instructor, in small parts.

:mod:`asynclab.course.classview` is the command that puts them together.
"""
