"""The measuring bench: generic parts every section uses.

An app in-process (``inprocess``) or on a real uvicorn (``server``, ``workers``), load and its
gauges (``load``, ``gauges``, ``probes``, ``loopwatch``), pictures (``figures``), raw HTTP
(``rawhttp``, ``keepalive``, ``crowd``), and proof that nothing is left running (``leftovers``).
Nothing here knows about a particular section.
"""
