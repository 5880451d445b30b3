"""The ``livemig`` command line (``livemig.cli.main:main``); imports nothing until run."""
