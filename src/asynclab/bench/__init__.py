"""The measuring bench: the generic parts every section uses; nothing here knows a particular section.

CONTRIBUTING.md ("Where things live") maps its modules.
"""
