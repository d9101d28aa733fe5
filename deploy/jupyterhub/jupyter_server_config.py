"""Each learner's JupyterLab in a room (the single-user server). jupyterhub_config.py passes it with --config.

Two jobs:

1. Free what a learner leaves idle, without another package: a kernel holds about 150 MB and
   JupyterLab keeps one per notebook left open, so idle kernels are shut down; a server with
   nothing to do for an hour stops itself. The learner's files stay.

2. Stop cleanly. JupyterHub stops a learner's server with SIGINT first. Jupyter Server handles
   SIGINT only when it has a terminal; started by a hub it has none, so SIGINT ends the server at
   once, without shutting its kernels down. Each orphaned kernel then notices its parent is gone
   and exits without running its exit hooks, and a section-7 uvicorn worker group it started
   lives on, holding its port (tests/test_hub.py saw exactly that). Here SIGINT is turned into
   SIGTERM, which Jupyter Server always handles by shutting every kernel down first; each kernel
   then stops the worker groups it started.
"""

import os
import signal

c = get_config()  # noqa: F821 - Jupyter provides get_config() to its config files

c.MappingKernelManager.cull_idle_timeout = 1200  # a kernel idle for 20 minutes is shut down
c.MappingKernelManager.cull_interval = 120
c.MappingKernelManager.cull_connected = True  # also when its notebook tab is still open
c.ServerApp.shutdown_no_activity_timeout = 3600  # no kernel, no terminal, no request for an hour: stop


def _stop_cleanly(signum, frame):
    os.kill(os.getpid(), signal.SIGTERM)


signal.signal(signal.SIGINT, _stop_cleanly)  # with a terminal, Jupyter Server installs its own handler over this one
