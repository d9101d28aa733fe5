"""Stand-ins for the services each section's apps call, one module per section.

``sNN_topic.py`` has the same stem as the section's checks (``asynclab/checks/sNN_topic.py``) and
answer tests (``tests/answers/test_sNN_topic.py``): from a section's number you find all three.
"""
