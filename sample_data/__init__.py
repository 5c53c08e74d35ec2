"""A small real sample that the plugin offers and the demo runs on."""
