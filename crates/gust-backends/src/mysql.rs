//! The `mysql` backend: SQL databases on MariaDB or MySQL (through sqlx).
