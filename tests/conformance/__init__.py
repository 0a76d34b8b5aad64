"""Black-box conformance tests: OCI Distribution Spec v1.1 and Docker Registry HTTP API V2."""
