"""`accord demo`: a whole federation on this machine, as separate processes."""
