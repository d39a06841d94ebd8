from lrsa.cli import main

main()
