"""gRPC entrypoint of the inventory service."""

from shop.inventory.v1 import inventory_pb2_grpc


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    """The InventoryService contract; the order flow (issue "Order flow") fills it in."""
