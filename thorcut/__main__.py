from thorcut.cli import main

main()
