"""`python -m notifier` (or `shop-notifier`): run the notifier service until SIGTERM/SIGINT."""

from shop_chassis.service import run_service

from notifier.bootstrap import wire


def main() -> None:
    run_service("notifier", wire)


if __name__ == "__main__":
    main()
