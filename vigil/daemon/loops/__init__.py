"""The built-in loops, one file each: queue, scheduler, sensors, monitor, retries.

They arrive with their own issues; until then the daemon runs only the loops named in
`daemon.loops` as `module:Class` (see `vigil.daemon.extension`).
"""
