"""Runs on Celery workers: the app vigil configures, the run task, the launcher's options.

`options` is light (pydantic only) and is what the launcher validates at the edge; `app`
and `task` import Celery and are imported only by the Celery launcher and by
`vigil celery worker`, never by the other commands.
"""
