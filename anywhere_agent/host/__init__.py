"""Host gateway and platform facts: the only way the product touches a node."""
