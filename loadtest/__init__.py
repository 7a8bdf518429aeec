"""The shop's load tests: ghz load shapes, anchors measured in the same run, SLO verdicts.

`python -m loadtest --help` (or `make bench ARGS=--help`); see loadtest/README.md.
"""
