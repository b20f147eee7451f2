//! sea-orm entities, one module per table.

pub mod channel_users;
pub mod channels;
pub mod livestreams;
pub mod payment_events;
pub mod payments;
pub mod users;
