"""Sphinx configuration of the course's website (built by `python tools/build_site.py`).

The build script stages the pages into build/site/src (lessons already executed, outputs
sanitized; exercises as handed out; no solutions) and runs Sphinx with this folder as its
configuration directory. Nothing is executed here: `nb_execution_mode = "off"`.

Also here: figures.toml (each figure's alt text, which the build script writes into the cell's
`mystnb.image.alt` metadata), _static/course.css and course.js (the course's styles; a tab stop on
every block that scrolls), _templates/search.html (the search page's heading).
"""

from __future__ import annotations

project = "FastAPI under concurrency"
author = "the course's authors"
copyright = "the course's authors"

extensions = ["myst_nb"]
root_doc = "index"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["**/.ipynb_checkpoints"]

# The build script has executed every lesson already (two kernels at a time) and cleaned its outputs.
nb_execution_mode = "off"
nb_merge_streams = True
myst_heading_anchors = 3  # "[text](page.md#a-heading)" links resolve to heading slugs
myst_enable_extensions = ["colon_fence"]
myst_url_schemes = ["http", "https", "mailto"]
# An intended failure in a lesson (a ❌ check message) is not a Python traceback the lexer can read.
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

html_theme = "furo"
html_title = "FastAPI under concurrency"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_js_files = ["course.js"]  # a tab stop for every code block that scrolls (keyboard readers)
templates_path = ["_templates"]  # search.html: the heading Furo's search page lacks
html_copy_source = False  # no raw notebooks or markdown next to the pages
html_show_sourcelink = False
html_show_sphinx = False
html_last_updated_fmt = None
html_theme_options = {"navigation_with_keys": True}
