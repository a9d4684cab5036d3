"""An independent gRPC client: Python grpcio with no generated code.

It discovers the API by server reflection, checks health, places an order and reads it back.
Run by order-grpc's tests against a server they start:

    python reflection_client.py 127.0.0.1:50051
"""

import sys
import uuid

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def unary(channel, method, response_class):
    return channel.unary_unary(
        method,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )


def main(address: str) -> None:
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)

    database = ProtoReflectionDescriptorDatabase(channel)
    print("services: " + ", ".join(sorted(database.get_services())))
    pool = DescriptorPool(database)

    def message(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    status_names = pool.FindEnumTypeByName("orders.v1.OrderStatus").values_by_number

    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="orders.v1.OrderService"))
    print("health: " + health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    order_id = str(uuid.uuid4())
    request = message("orders.v1.PlaceOrderRequest")(
        command_id=str(uuid.uuid4()),
        order_id=order_id,
        customer_id=str(uuid.uuid4()),
        shipping_method=pool.FindEnumTypeByName("orders.v1.ShippingMethod")
        .values_by_name["SHIPPING_METHOD_STANDARD"]
        .number,
    )
    line = request.lines.add()
    line.sku = "PY-1"
    line.quantity = 3
    line.unit_price.currency = "EUR"
    line.unit_price.amount_minor = 1000
    address_message = request.shipping_address
    address_message.recipient = "Grace Hopper"
    address_message.line1 = "1 Navy Way"
    address_message.city = "Arlington"
    address_message.postal_code = "22202"
    address_message.country = "US"

    place = unary(channel, "/orders.v1.OrderService/PlaceOrder", message("orders.v1.CommandResponse"))
    placed, call = place.with_call(request, metadata=[("x-correlation-id", "python-client")], timeout=10)
    echoed = dict(call.initial_metadata()).get("x-correlation-id")
    if echoed != "python-client":
        raise SystemExit(f"correlation id not echoed: {echoed!r}")
    print(f"placed: version={placed.version} status={status_names[placed.status].name}")

    get = unary(channel, "/orders.v1.OrderQueryService/GetOrder", message("orders.v1.GetOrderResponse"))
    read = get(
        message("orders.v1.GetOrderRequest")(order_id=order_id, min_position=placed.global_position),
        timeout=10,
    )
    order = read.order
    print(
        f"read back: status={status_names[order.status].name} "
        f"total={order.total.amount_minor} {order.total.currency}"
    )

    bad = message("orders.v1.PlaceOrderRequest")(command_id="not-a-uuid", order_id=order_id)
    try:
        place(bad, timeout=10)
        raise SystemExit("a bad request was accepted")
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise SystemExit(f"expected INVALID_ARGUMENT, got {error.code()}")
        print(f"bad request: {error.code().name}")


if __name__ == "__main__":
    main(sys.argv[1])
