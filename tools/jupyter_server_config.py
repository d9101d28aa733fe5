"""JupyterLab settings for this course, loaded by tools/open_course.py (`--config=` this file); they touch no home folder."""

# ruff: noqa: F821  (`c` is the config object Jupyter passes to this file)

ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"


# No "Would you like to get notified about official Jupyter news?" pop-up, and no update check: the
# announcements plugin is off in every page sent to the browser, and the server neither fetches the news
# feed nor asks PyPI for a newer version (a room may be offline).
def _without_announcements(handler, page_config):  # jupyterlab_server calls it for every page it serves
    disabled = page_config.get("disabledExtensions") or []
    if isinstance(disabled, dict):  # jupyterlab_server accepts both forms
        disabled = [name for name, off in disabled.items() if off]
    page_config["disabledExtensions"] = [*disabled, ANNOUNCEMENTS]
    return page_config


c.ServerApp.tornado_settings = {"page_config_hook": _without_announcements}
# The course's additions (asynclab.course.labserver): the start page behind the link JupyterLab prints,
# /asynclab/open/<notebook>, and lessons that open unchanged (closing one you did not touch asks nothing).
c.ServerApp.jpserver_extensions.update({"asynclab.course.labserver": True})
c.ServerApp.contents_manager_class = "asynclab.course.labserver.CourseContents"
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
