"""Schedule and sensor evaluation, out of the daemon's process.

`evaluate` runs user functions and checks what they return (in the child); `child` is the
process a code location gets (`python -m vigil.evaluation.child`); `process` and `pool`
are the daemon's side: warm processes, a pipe protocol of JSON lines, timeouts and restarts.
`messages` holds what crosses the pipe: frozen types, each with its one JSON codec.
"""
