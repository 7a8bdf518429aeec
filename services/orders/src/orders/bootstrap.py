"""Wires the orders service: its gRPC API and its Kafka topic."""

from __future__ import annotations

import grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.kafka import ORDERS_TOPIC, ShopApp, declare_topic
from shop_chassis.service import ServiceParts
from shop_chassis.settings import ServiceSettings

from orders.entrypoints.grpc_api import OrderServicer


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    servicer = OrderServicer()

    def register(server: grpc.aio.Server) -> None:
        orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name],
        grpc_registrars=[register],
        topics=[declare_topic(app, settings, ORDERS_TOPIC)],
    )
