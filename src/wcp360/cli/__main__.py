"""`python -m wcp360.cli`."""

from wcp360.cli.main import main

main()
