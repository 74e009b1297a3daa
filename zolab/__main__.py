from zolab.cli import main

main()
