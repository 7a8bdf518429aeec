"""`python -m orders` (or `shop-orders`): run the orders service until SIGTERM/SIGINT."""

from shop_chassis.service import run_service

from orders.bootstrap import wire


def main() -> None:
    run_service("orders", wire)


if __name__ == "__main__":
    main()
