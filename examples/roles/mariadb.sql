-- A read-only MariaDB/MySQL account for Lockbox.
-- Run as an administrator, replacing the password and the host pattern
-- ('%' = any host; prefer the backup host's address):
--   mariadb < mariadb.sql
-- `lockbox doctor` then reports "source NAME: least privilege  PASS".

CREATE USER 'lockbox_backup'@'%' IDENTIFIED BY 'REPLACE-WITH-A-LONG-RANDOM-PASSWORD';

-- What mariadb-dump --single-transaction --routines --triggers --events needs,
-- on the database(s) to back up -- and nothing that can change data:
GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON `shop`.* TO 'lockbox_backup'@'%';
-- Dumping routines (SHOW CREATE FUNCTION/PROCEDURE) of other definers:
GRANT SELECT ON mysql.proc TO 'lockbox_backup'@'%';
-- mysqldump/mariadb-dump read tablespace information (MySQL 8 requires it):
GRANT PROCESS ON *.* TO 'lockbox_backup'@'%';

-- Check:  SHOW GRANTS FOR 'lockbox_backup'@'%';
