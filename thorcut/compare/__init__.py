"""Pure parity logic: no sockets, no Typer, no Rich. Values in, result objects out."""
