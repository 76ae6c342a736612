"""Support bundles: what an operator sends when asking for help, with every secret removed."""
