"""What every shop service shares, each concern in one module.

settings  - configuration from environment variables, failing fast
logging   - structlog setup (JSON or console), with Faust's stdlib logs routed through it
telemetry - OpenTelemetry tracer provider and instrumentation, flushed on shutdown
metrics   - the Prometheus /metrics endpoint
grpc      - the grpc.aio server (health, reflection, interceptors, graceful stop) as a mode.Service
kafka     - the Faust app factory and topic declarations
service   - `run_service`, which wires all of the above for one service process
"""
