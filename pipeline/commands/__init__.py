"""CLI command groups, one module per area; importing a module registers its commands on ``cli.app``."""
