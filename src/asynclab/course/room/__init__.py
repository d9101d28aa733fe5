"""The room: what ``python -m asynclab class`` shows an instructor, in small parts.

- :mod:`.plain`: every learner-written string becomes plain text (no escapes, no bidi tricks, capped);
- :mod:`.safefile`: files written without following links (reports, the page, the CSV);
- :mod:`.reading`: report files found and read without following links, size-capped, checked;
- :mod:`.model`: the room itself: learners, conflicts, the roster, the frontier, where it is stuck;
- :mod:`.show`: the terminal table, the heatmap PNG, the HTML page and the CSV gradebook;
- :mod:`.hub`: on JupyterHub, progress run in each learner's server, collected by the instructor.

:mod:`asynclab.course.classview` is the command that puts them together.
"""
