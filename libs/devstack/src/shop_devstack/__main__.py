from shop_devstack.cli import main

main()
