"""The operator's tools: the federation's CA, certificates, signed terms."""
