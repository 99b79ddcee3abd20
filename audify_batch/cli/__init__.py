"""The ``audify`` command line: one module per subcommand group, ``main`` dispatches."""
