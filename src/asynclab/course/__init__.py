"""The course's own tooling: names and building (``authoring``), checks and hints (``checking``),
``progress`` and its ``report``, the instructor's ``classview``, the ``environment`` check, and
headless kernels (``notebook``)."""
