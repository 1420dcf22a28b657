//! One module per subcommand.

pub mod agent;
pub mod audit;
pub mod compile;
pub mod config_cli;
pub mod dags;
pub mod db;
pub mod demo;
pub mod events;
pub mod init;
pub mod lite;
pub mod login;
pub mod postgres;
pub mod push;
pub mod runs;
pub mod secrets;
pub mod server;
pub mod setup;
pub mod tasks;
pub mod tokens;
pub mod triggerer;
