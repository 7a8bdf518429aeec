"""What every shop service shares, each concern in one module.

registry     - the services, their ports and who calls whom: the one list
settings     - configuration from environment variables, failing fast
logging      - structlog setup (JSON or console), Faust's stdlib logs routed through it
telemetry    - OpenTelemetry tracer provider, instrumentation, Kafka process spans, exemplars
metrics      - the Prometheus /metrics endpoint
grpc_metrics - gRPC RED metrics (server and client interceptors)
errors       - ApiError and friends: precise status codes with google.rpc details
validation   - request validation collecting every violation, opaque page tokens
interceptors - the base for server interceptors that wrap handlers
grpc         - the grpc.aio server (health, reflection, interceptors, graceful stop)
kafka        - the Faust app, topic declarations, consumer lag, rebalances
db           - the async SQLAlchemy database, Alembic migrations, SQLite write ordering
outbox       - transactional outbox table, staging events, the relay to Kafka
events       - consuming protobuf events: dedupe, retries, dead letters
retention    - pruning sent outbox rows and old dedupe records on a schedule
service      - `run_service`, which wires all of the above for one service process
container    - the image's commands: run a service by name, probe its gRPC health
"""
