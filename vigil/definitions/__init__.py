"""The user-facing definitions API (steps, jobs, Definitions) and the workspace loader.

The `@step` decorator and the `job()` factory live in the `step` and `job` modules and are
deliberately not re-exported here: binding them in this package would hide those modules
(`from vigil.definitions import job` must keep giving the module). The top-level `vigil`
package exports them for users.
"""

from vigil.definitions.definitions import Definitions
from vigil.definitions.job import JobDef
from vigil.definitions.step import RetryPolicy, StepDef
from vigil.definitions.workspace import CodeLocation, Workspace, load_location, load_workspace

__all__ = [
    "CodeLocation",
    "Definitions",
    "JobDef",
    "RetryPolicy",
    "StepDef",
    "Workspace",
    "load_location",
    "load_workspace",
]
