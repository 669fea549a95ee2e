"""The suite's throwaway PostgreSQL cluster (SPEC §4.1). It lives in lab/pg_cluster.py, which
`gap bench api --database postgresql` uses too; tests import it from here."""
from lab.pg_cluster import PORT, SUPERUSER, PostgresCluster, PostgresUnavailable, find_bindir

__all__ = ["PORT", "SUPERUSER", "PostgresCluster", "PostgresUnavailable", "find_bindir"]
