-- privacy--0.2--0.3.sql: upgrade from release 0.2 to 0.3.
--
-- Every change to sql/install/ since 0.2 has its statement here, in the
-- same order; test/tap/011_upgrade.pl checks that a 0.2 database updated
-- with this script has exactly the objects of a fresh 0.3 install
-- (test/tap/extension_signature.sql) and that its data still opens,
-- verifies and reports.  Schema-qualified throughout; search_path is
-- pg_catalog, pg_temp while it runs.

\echo Use "ALTER EXTENSION privacy UPDATE TO '0.3'" to load this file. \quit
