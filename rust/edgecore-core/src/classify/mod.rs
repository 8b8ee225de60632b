//! Classifying clients: bots by User-Agent ([`bots`]) and A/B variants ([`ab`]).

pub mod ab;
pub mod bots;

pub use ab::Experiment;
pub use bots::BotDetector;
