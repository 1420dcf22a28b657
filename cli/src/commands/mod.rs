//! One module per subcommand.

pub mod db;
pub mod events;
pub mod lite;
pub mod postgres;
