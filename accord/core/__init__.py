"""The ground floor: what both roles need and that needs nothing of ours but `accord.errors`."""
