"""The control API: HTTP on loopback, behind a token, Host and Origin checks."""
