"""agentgw's benchmark harness: ``python -m bench`` (or ``make bench``).

Every number is measured beside a bare baseline (a no-op grpc.aio server and a bare Starlette
fan-out) in the same run, on the same machine, and reported as a ratio to it.
"""
