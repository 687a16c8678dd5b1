"""The `mana` command: the composition root where configuration is read and parts are wired."""
