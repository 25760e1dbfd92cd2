"""Runs and steps on Celery workers: the app vigil configures, the run task, the step task
of the celery executor, the launcher's options.

`options` is light (pydantic only) and is what the launcher validates at the edge; `step`
(the step task's message and result) is light too. `app`, `task` and `step_task` import
Celery and are imported only by the Celery launcher, the celery executor and
`vigil celery worker`, never by the other commands.
"""
