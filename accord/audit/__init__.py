"""`accord audit`: verify ledgers, report privacy budgets and contributions (no torch)."""
