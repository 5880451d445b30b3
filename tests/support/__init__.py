"""Test infrastructure shared by the integration tests and `make demo`: a private libvirtd,
the tiny guest, and a runner for the agent as Pacemaker would call it."""
