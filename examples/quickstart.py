"""A short tour of tocsin: declare a signal, connect receivers, send.

Run it with ``python3 dev.py run``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tocsin import Signal, receiver

logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
log = logging.getLogger("quickstart")

# 1. Declare a signal, usually at module level, as with django.dispatch.
order_placed = Signal()


class Order:
    def __init__(self, number: int, total: float) -> None:
        self.number = number
        self.total = total

    def place(self) -> list[tuple[Any, Any]]:
        # 3. Send it: every receiver is called with signal=, sender= and the payload.
        return order_placed.send(sender=Order, order=self)


# 2. Connect receivers: with the decorator, or with connect().
@receiver(order_placed, sender=Order)
def send_receipt(sender: type[Order], order: Order, **kwargs: Any) -> str:
    log.info("receipt for order #%s (%.2f)", order.number, order.total)
    return f"receipt-{order.number}"


def update_stock(sender: object, order: Order, **kwargs: Any) -> str:
    log.info("stock updated for order #%s", order.number)
    return "stock-ok"


async def notify_warehouse(sender: object, order: Order, **kwargs: Any) -> str:
    await asyncio.sleep(0.01)  # async receivers run concurrently
    log.info("warehouse notified of order #%s", order.number)
    return "notified"


def flaky_analytics(sender: object, **kwargs: Any) -> None:
    raise ConnectionError("analytics service is down")


def main() -> None:
    order_placed.connect(update_stock)
    print("responses:", order_placed.send(sender=Order, order=Order(1, 9.5)))

    # send_robust() calls every receiver even when one fails, and returns the error.
    order_placed.connect(flaky_analytics, dispatch_uid="analytics")
    for recv, response in order_placed.send_robust(sender=Order, order=Order(2, 20.0)):
        print(f"  {recv.__name__:>16} -> {response!r}")
    order_placed.disconnect(dispatch_uid="analytics")

    # Async receivers: awaited by asend(), concurrently.
    order_placed.connect(notify_warehouse)
    responses = asyncio.run(order_placed.asend(sender=Order, order=Order(3, 42.0)))
    print("asend responses:", [response for _, response in responses])

    # Receivers are weakly referenced by default: when one is garbage collected,
    # it is disconnected.
    print("has listeners:", order_placed.has_listeners(Order))


if __name__ == "__main__":
    main()
