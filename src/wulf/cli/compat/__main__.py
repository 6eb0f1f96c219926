from wulf.cli.compat import main

main()
