"""JupyterLab settings for this course, loaded by tools/open_course.py (`--config=` this file).

Nothing here touches your home folder: the settings hold only while JupyterLab runs from the course.

- No "Would you like to get notified about official Jupyter news?" pop-up, and no update check:
  JupyterLab's announcements plugin is switched off in the page JupyterLab sends to the browser, and
  the server neither fetches the news feed nor asks PyPI for a newer version (a room may be offline).
- The course's additions to the server (asynclab.course.labserver): the start page behind the link
  JupyterLab prints, /asynclab/open/<notebook>, which opens the notebook with the file browser at the
  course root; and lessons that open unchanged, so closing one you did not touch asks nothing.
"""

# ruff: noqa: F821  (`c` is the config object Jupyter passes to this file)

ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"


def _without_announcements(handler, page_config):  # jupyterlab_server calls it for every page it serves
    disabled = page_config.get("disabledExtensions") or []
    if isinstance(disabled, dict):  # jupyterlab_server accepts both forms
        disabled = [name for name, off in disabled.items() if off]
    page_config["disabledExtensions"] = [*disabled, ANNOUNCEMENTS]
    return page_config


c.ServerApp.tornado_settings = {"page_config_hook": _without_announcements}
c.ServerApp.jpserver_extensions.update({"asynclab.course.labserver": True})
c.ServerApp.contents_manager_class = "asynclab.course.labserver.CourseContents"
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
