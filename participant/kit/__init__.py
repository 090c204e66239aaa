"""A participant's startup kit: keys, requests, certificates, the preflight check."""
