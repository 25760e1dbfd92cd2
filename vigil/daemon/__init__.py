"""The daemon: supervised loops, their heartbeats, health judgement and shutdown.

Modules, each importable on its own (this package imports nothing, so the light
`vigil daemon status` path never pays for the running daemon):

    loop.py        a loop: name, interval, timeout, one `iterate`
    vitals.py      loop statistics, the daemon's identity, the heartbeat info codec (light)
    extension.py   loops named in vigil.yaml (`module:Class`) and the context they get
    runner.py      runs one loop: wake-up or deadline, iterations, crashes, restart backoff
    service.py     the `Service` protocol: anything the supervisor keeps running
    supervisor.py  one task group for runners and services; restart on crash; drain on stop
    heartbeat.py   each loop's heartbeat, written by its own small task
    health.py      the pure health judgement: healthy, late, failing, hung, down, stopped
    presence.py    one daemon per store: refuse to start beside a live one
    status.py      rows for `vigil daemon status` and the liveness verdict (pure)
    signals.py     SIGTERM/SIGINT drain, a second signal forces exit, SIGHUP reloads
    logs.py        readable or JSON log lines with stable keys (event, loop, run_id)
    runtime.py     the daemon process: all of the above put together
"""
