"""The measuring bench: generic parts every section uses.

An app in-process (``inprocess``) or on a real uvicorn: in the kernel's loop (``server``), as a
worker group (``workers``) or as a process of its own (``processes``); free ports (``ports``),
a scratch folder for app modules (``workspace``) and a temporary SQLite database (``database``).
Load and its gauges (``load``, ``gauges``, ``probes``, ``loopwatch``), a record of the calls a
stand-in receives (``calls``), a stand-in client's tie to its event loop (``loopbound``), cancellation that takes time and a watch over
an app's shutdown (``cancelling``), the bench's own time limits (``limits``), pictures (``figures``), raw HTTP (``rawhttp``, ``keepalive``,
``crowd``), proof that nothing is left running (``leftovers``), a Python file imported as a module
of its own (``modules``), ruff's findings on a file (``lint``), and the production loop-stall
watchdog (``watchdog``; ``python -m asynclab build`` copies it into the take-home template).
Nothing here knows about a particular section. This docstring is the one map of ``bench/``.
"""
