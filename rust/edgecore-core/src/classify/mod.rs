//! Classifying clients: bots by User-Agent ([`bots`]), the device class ([`device`]) and A/B
//! variants ([`ab`]).

pub mod ab;
pub mod bots;
pub mod device;

pub use ab::Experiment;
pub use bots::BotDetector;
pub use device::Device;
