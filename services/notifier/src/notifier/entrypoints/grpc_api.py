"""gRPC entrypoint of the notifier service."""

from shop.notifier.v1 import notifier_pb2_grpc


class NotifierServicer(notifier_pb2_grpc.NotifierServiceServicer):
    """The NotifierService contract; the order flow (issue "Order flow") fills it in."""
