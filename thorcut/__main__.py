from thorcut.cli.app import main

main()
