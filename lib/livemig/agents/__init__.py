"""The resource agents shipped by livemig (one module per agent)."""
