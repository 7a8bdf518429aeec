"""Wires the inventory service: its gRPC API and its Kafka topic."""

from __future__ import annotations

import grpc
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop_chassis.kafka import INVENTORY_TOPIC, ShopApp, declare_topic
from shop_chassis.service import ServiceParts
from shop_chassis.settings import ServiceSettings

from inventory.entrypoints.grpc_api import InventoryServicer


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    servicer = InventoryServicer()

    def register(server: grpc.aio.Server) -> None:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[
            inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
        ],
        grpc_registrars=[register],
        topics=[declare_topic(app, settings, INVENTORY_TOPIC)],
    )
