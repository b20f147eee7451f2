//! Integration tests of the platform API over real HTTP, each against SQLite and PostgreSQL.
//! PostgreSQL: `ONAIR_TEST_PG_URL` or postgres://postgres@127.0.0.1:5432/postgres (must be up).

mod common;

mod auth;
mod bans;
mod channels;
mod follow;
mod live;
mod misc;
mod subscriptions;
