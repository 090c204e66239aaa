"""The round's running sum: parameters, spooled uploads, sum worker processes."""
