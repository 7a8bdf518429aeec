"""gRPC entrypoint of the orders service."""

from shop.orders.v1 import orders_pb2_grpc


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    """The OrderService contract; the order flow (issue "Order flow") fills it in."""
