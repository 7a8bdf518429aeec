import os

# The devstack starts processes (fork + exec) while its gRPC health checks run; gRPC's fork
# handlers would only log that they skip themselves. Read by grpc on import, hence here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from shop_devstack.cli import main

main()
