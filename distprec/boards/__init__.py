"""Jetson boards that cannot run Ray: an inventory, a board-side runner, an SSH proxy."""
