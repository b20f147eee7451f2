//! Schema migrations, applied in order by [`crate::Api::open`].

mod m0001_initial;
mod m0002_chat;
mod m0003_hls;

use sea_orm_migration::prelude::*;

/// The migrator of the onair schema.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_chat::Migration),
            Box::new(m0003_hls::Migration),
        ]
    }
}
