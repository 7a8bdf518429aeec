"""`python -m inventory` (or `shop-inventory`): run the inventory service until SIGTERM/SIGINT."""

from shop_chassis.service import run_service

from inventory.bootstrap import wire


def main() -> None:
    run_service("inventory", wire)


if __name__ == "__main__":
    main()
