"""Starts and supervises the local stack: Kafka, Jaeger, Prometheus and the services.

`make run` uses it through `python -m shop_devstack run`; the integration tests use
`Stack` to start a private Kafka and the services on their own ports.
"""
