"""Tools shared by deploy/check and deploy/run-local (standard library only)."""
