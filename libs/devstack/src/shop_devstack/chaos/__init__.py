"""`make chaos`: orders at a steady rate while processes, brokers and the database fail on a
schedule; then a verdict from what clients were told against what the system holds.

- `load`: the client, which retries as a real one would and writes down every answer;
- `faults`: what is injected, when, and how long recovery took;
- `verdict`: the checks (nothing lost, nothing duplicated, stock adds up, all settled);
- `run`: starts a stack of its own, runs the above, prints and saves the verdict.
"""
