-- A read-only PostgreSQL role for Lockbox (PostgreSQL 14 or later).
-- Run as a superuser, e.g.:  psql -v pw="$(cat /etc/lockbox/billing.password)" -f postgres.sql
-- `lockbox doctor` then reports "source NAME: least privilege  PASS".

CREATE ROLE lockbox_backup LOGIN PASSWORD :'pw'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION;
-- pg_read_all_data: SELECT on every table, view and sequence, in every
-- schema and database, now and in future -- and nothing else.
-- INHERIT must apply to it, so grant it explicitly with INHERIT TRUE on 16+,
-- or simply leave the role INHERIT (the default) on 14-15:
ALTER ROLE lockbox_backup INHERIT;
GRANT pg_read_all_data TO lockbox_backup;

-- It needs nothing else. Make sure it cannot create objects anywhere:
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- (and, per database it connects to)
-- REVOKE CREATE ON DATABASE billing FROM lockbox_backup;

-- pg_dump runs in a read-only REPEATABLE READ transaction; a long dump on a
-- busy primary holds back vacuum. Consider dumping from a replica, and a
-- statement timeout for safety:
ALTER ROLE lockbox_backup SET statement_timeout = '4h';

-- Before PostgreSQL 14 (no pg_read_all_data), per database and schema:
--   GRANT CONNECT ON DATABASE billing TO lockbox_backup;
--   GRANT USAGE ON SCHEMA public TO lockbox_backup;
--   GRANT SELECT ON ALL TABLES IN SCHEMA public TO lockbox_backup;
--   GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO lockbox_backup;
--   ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO lockbox_backup;
--   ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO lockbox_backup;
