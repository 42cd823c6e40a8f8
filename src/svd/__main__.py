from svd.cli import main

main()
