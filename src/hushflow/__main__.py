from hushflow.cli import main

main()
